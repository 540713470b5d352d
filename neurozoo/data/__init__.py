"""Neural responses and stimulus sets."""

from neurozoo.data.bundled import load_bundled
from neurozoo.data.responses import (
    check_responses,
    load_responses,
    make_responses,
    save_responses,
    split_half_reliability,
    trial_average,
    validate_responses,
)
from neurozoo.data.stimuli import StimulusSet, check_match, load_stimulus_set

__all__ = [
    "StimulusSet",
    "check_match",
    "check_responses",
    "load_bundled",
    "load_responses",
    "load_stimulus_set",
    "make_responses",
    "save_responses",
    "split_half_reliability",
    "trial_average",
    "validate_responses",
]
