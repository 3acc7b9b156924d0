"""Schemathesis hooks for ``test_api_contract.py``: real bundles and real runs where the data must be valid.

Loaded by the ``st`` process through ``SCHEMATHESIS_HOOKS=leaderboard.tests.contract_hooks``;
it reads what the test wrote into the environment:

* ``VADI_CONTRACT_BUNDLE``: a valid bundle (zip) for the suite ``VADI_CONTRACT_SUITE`` and the
  method ``VADI_CONTRACT_METHOD`` (the name in its manifest, which an upload must match);
* ``VADI_CONTRACT_RUN``: a JSON request that starts a cheap re-benchmark.

A JSON Schema cannot say "a zip archive of anomaly maps for these test ids", so generated
uploads are refused with 400 (allowed for that operation in ``schemathesis.toml``). To exercise
the accepted path and its links too, the positive cases of the examples and stateful phases
upload the real bundle (the generated visibility and description are kept) and
start a real run; Schemathesis then checks the 201 answers against the schema and follows the
links to read the submission and the run. Fuzzing and coverage cases are left as generated.

The upload is swapped in ``before_call``, as the request's ``files``/``data``, not in the case:
Schemathesis re-validates a case whose body a hook changed and counts any binary content as
invalid, which would turn the positive case into a negative one that must be refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import schemathesis
from schemathesis.generation.meta import TestPhase

_REAL_DATA_PHASES = (TestPhase.EXAMPLES, TestPhase.STATEFUL)


def _wants_real_data(case) -> bool:
    """A positive case (no part of it generated to violate the schema) of the examples or stateful phase."""
    meta = case.meta
    return (
        meta is not None
        and meta.phase.name in _REAL_DATA_PHASES
        and not meta.generation.mode.is_negative
        and not any(component.mode.is_negative for component in meta.components.values())
        and isinstance(case.body, dict)
    )


@schemathesis.hook("before_call").apply_to(operation_id="submissions_create")
def upload_a_real_bundle(context, case, kwargs):
    if _wants_real_data(case) and os.environ.get("VADI_CONTRACT_BUNDLE"):
        fields = {name: case.body.get(name) for name in ("visibility", "description")}
        kwargs["data"] = {
            **{name: value for name, value in fields.items() if isinstance(value, str)},
            "method": os.environ["VADI_CONTRACT_METHOD"],  # the bundle's manifest names it
            "suite": os.environ["VADI_CONTRACT_SUITE"],
        }
        bundle = Path(os.environ["VADI_CONTRACT_BUNDLE"]).read_bytes()
        kwargs["files"] = {"archive": ("bundle.zip", bundle, "application/zip")}


@schemathesis.hook("before_call").apply_to(operation_id="staff_benchmark_runs_create")
def start_a_real_run(context, case, kwargs):
    # Swapped in the request, as the upload is: a ``map_case`` change of the body did not reach
    # the examples phase, so the 201 depended on the stateful phase's random draws.
    if _wants_real_data(case) and os.environ.get("VADI_CONTRACT_RUN"):
        kwargs.pop("data", None)
        kwargs["json"] = json.loads(os.environ["VADI_CONTRACT_RUN"])
