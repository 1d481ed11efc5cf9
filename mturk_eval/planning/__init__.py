"""The study planner (``mturk-eval plan``): power, minimum detectable differences, sample sizes and cost
of a rating study before paying for it.

- :mod:`.model`: the rating model per aspect (item, rater and residual variance on the aspect's own
  scale, the prompt's share of the item variance), from a pilot through the report's own exclusions,
  pairing rule and crossed mixed model, or from documented defaults;
- :mod:`.power`: power by simulating the report's analysis on thousands of studies at once (the same
  paired or unpaired test, Holm over the planned comparisons), next to an analytic approximation;
- :mod:`.cost`: what a design costs per platform (MTurk fees as publish charges them, Prolific's reward,
  fee and VAT and, with a token, its own calculator; invite links free);
- :mod:`.plan`: the whole plan and its outputs (terminal table, plan.md, plan.json, power-curve PNG).
"""
