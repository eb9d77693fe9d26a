"""Hypothesis profiles for the host tests: the default keeps CI fast; `--hypothesis-profile=long` (make fuzz)
runs the fuzz tests for a long time. Registered here because pytest loads the profile before test modules."""
from hypothesis import settings

settings.register_profile("long", max_examples=200_000, deadline=None)
