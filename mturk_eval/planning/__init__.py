"""The study planner (``mturk-eval plan``): power, minimum detectable differences, sample sizes and cost
of a rating study before paying for it.

- :mod:`.model`: the rating model per aspect (item, rater and residual variance on the 1-5 scale), from a
  pilot through the report's own exclusions and crossed mixed model, or from documented defaults;
- :mod:`.power`: power by simulating the report's analysis on thousands of studies at once (the same
  paired test, Holm over the planned comparisons), next to an analytic approximation;
- :mod:`.cost`: what a design costs per platform (MTurk fees as publish charges them, Prolific's reward,
  fee and VAT, invite links free);
- :mod:`.plan`: the whole plan and its outputs (terminal table, plan.md, plan.json, power-curve PNG).
"""
