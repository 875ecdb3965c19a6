"""The one content hash: equal content, equal name, and the names already written (configuration
keys in records, cached task-0 prefixes and classifiers) stay what they were."""

from __future__ import annotations

from pathlib import Path

from cl_sweeps.hashing import content_hash
from cl_sweeps.records import config_key


def test_key_order_does_not_matter_and_non_json_values_are_written_as_text() -> None:
    assert content_hash({"a": 1, "b": [1, 2]}) == content_hash({"b": [1, 2], "a": 1})
    assert content_hash({"path": Path("/x")}) == content_hash({"path": "/x"})
    assert len(content_hash({}, 10)) == 10 and len(content_hash({})) == 40


def test_the_digests_already_on_disk_keep_their_values() -> None:
    assert content_hash({"b": [1, 2], "a": Path("/x")}) == (
        "7f86d50e33fd6f420e19c97fb1b218e672e901f0")
    # seed replicas share the key; the value is the one earlier sweeps wrote
    assert config_key({"strategy.name": "naive", "seed": 3, "lr": 1e-3}) == "0928482f22"
    assert config_key({"strategy.name": "naive", "seed": 4, "lr": 1e-3}) == "0928482f22"
