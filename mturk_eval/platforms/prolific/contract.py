"""What Prolific's researcher API v1 documents: paths' fields, enums and rules, in one place.

Transcribed from the offline contract ``../shared/docs/prolific/prolific-api.md`` (section numbers
below refer to it). The client checks its own requests against these before sending, and the local
emulator (:mod:`mturk_eval.emulators.prolific`) refuses any request that breaks them, so both sides
read the same table. Points the contract marks unverified (⚠) are settings elsewhere
(:class:`mturk_eval.platforms.prolific.settings.ProlificSettings`) with these values as defaults.
"""
from __future__ import annotations

import re

API_URL = "https://api.prolific.com/api/v1/"
APP_URL = "https://app.prolific.com"
# §12: where a participant is sent on finishing; the code goes in ``cc``.
COMPLETION_URL = f"{APP_URL}/submissions/complete"

# §12 URL placeholders in external_study_url.
PID, STUDY_ID, SESSION_ID = "{{%PROLIFIC_PID%}}", "{{%STUDY_ID%}}", "{{%SESSION_ID%}}"

# §2 create-study
PROLIFIC_ID_OPTIONS = ("question", "url_parameters", "not_required")
CODE_TYPES = ("COMPLETED", "FAILED_ATTENTION_CHECK", "FOLLOW_UP_STUDY", "GIVE_BONUS", "INCOMPATIBLE_DEVICE",
              "NO_CONSENT", "OTHER", "FIXED_SCREENOUT")
CODE_ACTIONS = ("AUTOMATICALLY_APPROVE", "MANUALLY_REVIEW", "ADD_TO_PARTICIPANT_GROUP",
                "REMOVE_FROM_PARTICIPANT_GROUP", "DYNAMIC_PAYMENT", "REQUEST_RETURN")
DEVICES = ("desktop", "tablet", "mobile")
PERIPHERALS = ("audio", "camera", "download", "microphone")
STUDY_TYPES = ("SINGLE", "QUOTA", "UK_REP_SAMPLE", "US_REP_SAMPLE")
# Every field create-study / update-study accepts (§2; legacy completion_code/_option kept, ⚠).
STUDY_FIELDS = frozenset({
    "name", "internal_name", "description", "external_study_url", "prolific_id_option", "completion_codes",
    "completion_code", "completion_option", "total_available_places", "estimated_completion_time",
    "maximum_allowed_time", "reward", "device_compatibility", "peripheral_requirements", "filters",
    "filter_set_id", "eligibility_requirements", "submissions_config", "project", "study_type", "study_labels",
    "access_details", "content_warning_details",
})
# The smallest body the live spec accepts (§2, "Required fields ⚠").
STUDY_REQUIRED = ("name", "prolific_id_option", "total_available_places", "estimated_completion_time", "reward",
                  "device_compatibility")
SUBMISSIONS_CONFIG_FIELDS = frozenset({"max_submissions_per_participant", "max_concurrent_submissions",
                                       "auto_rejection_categories"})
# update-study on a published study: the subset the CLI cites (§4).
PUBLISHED_UPDATABLE = frozenset({"internal_name", "total_available_places", "submissions_config"})
FILTER_FIELDS = frozenset({"filter_id", "selected_values", "selected_range", "weightings"})

# §3 study statuses, §5 transitions
STUDY_STATUSES = ("UNPUBLISHED", "PUBLISHING", "SCHEDULED", "ACTIVE", "PAUSED", "AWAITING REVIEW", "COMPLETED")
STUDY_ACTIONS = ("PUBLISH", "START", "PAUSE", "STOP")

# §7 submission statuses
SUBMISSION_STATUSES = ("RESERVED", "ACTIVE", "TIMED-OUT", "AWAITING REVIEW", "APPROVED", "RETURNED", "REJECTED",
                       "SCREENED OUT", "PARTIALLY APPROVED")
COUNT_KEYS = ("ACTIVE", "APPROVED", "AWAITING REVIEW", "REJECTED", "RESERVED", "RETURNED", "TIMED-OUT",
              "PARTIALLY APPROVED", "SCREENED OUT")

# §8a transition-submission
SUBMISSION_ACTIONS = ("APPROVE", "COMPLETE", "REJECT", "RETURN", "SCREEN_OUT", "START", "UNREJECT", "UNRETURN")
SUBMISSION_TRANSITION_FIELDS = frozenset({"action", "message", "rejection_category", "completion_code",
                                          "completion_code_data"})
REJECTION_CATEGORIES = ("TOO_QUICKLY", "TOO_SLOWLY", "FAILED_INSTRUCTIONS", "INCOMP_LONGITUDINAL", "FAILED_CHECK",
                        "LOW_EFFORT", "MALINGERING", "NO_CODE", "BAD_CODE", "NO_DATA", "UNSUPP_DEVICE", "OTHER")
MIN_REJECTION_MESSAGE = 100
# §8b
BULK_APPROVE_MAX = 1000

# §10 filters named by the contract's examples (the rest come from GET /filters/).
GROUP_ALLOWLIST = "participant_group_allowlist"
GROUP_BLOCKLIST = "participant_group_blocklist"  # ⚠ a setting: ProlificSettings.blocklist_filter_id
STUDIES_BLOCKLIST = "previous_studies_blocklist"

# §1: the Authorization header is "Token <token>"; tokens are opaque. What counts as well formed here
# (printable, no spaces, long enough to be a real token) is ours, not Prolific's (⚠, a setting).
TOKEN_PATTERN = r"[A-Za-z0-9._~+/=-]{20,512}"


def token_ok(token: str, pattern: str = TOKEN_PATTERN) -> bool:
    return bool(re.fullmatch(pattern, token))


def minor_units(amount: str) -> int:
    """'1.50' (major units, at most 2 decimals) -> 150."""
    whole, _, frac = amount.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


def major_units(minor: int | float) -> str:
    """150 -> '1.50' (minor units may carry hundredths, as fees do: 283.34 -> '2.84', rounded up)."""
    from decimal import ROUND_CEILING, Decimal

    return str((Decimal(str(minor)) / 100).quantize(Decimal("0.01"), rounding=ROUND_CEILING))
