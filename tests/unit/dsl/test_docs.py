"""docs/yaml-reference.md stays in step with dsl.schema: every key documented, with an example."""

import re

import pytest

from magicflow.dsl.schema import records
from magicflow.dsl.spec import Record
from tests.unit.dsl.support import REPO, check

REFERENCE = (REPO / "docs" / "yaml-reference.md").read_text(encoding="utf-8")


def section(name: str) -> str:
    match = re.search(rf"^## {re.escape(name)}\n(.*?)(?=^## |\Z)", REFERENCE, re.M | re.S)
    assert match is not None, f"docs/yaml-reference.md has no '## {name}' section"
    return match.group(1)


def yaml_blocks(text: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


@pytest.mark.parametrize("record", records(), ids=lambda r: r.name)
def test_every_key_has_a_table_row(record: Record) -> None:
    rows = re.findall(r"^\| `([a-z_]+)` \|", section(record.name), re.M)
    assert rows == list(record.names), "the table must list the keys of schema.py, in order"


@pytest.mark.parametrize("record", records(), ids=lambda r: r.name)
def test_every_key_has_an_example(record: Record) -> None:
    examples = "\n".join(yaml_blocks(section(record.name)))
    missing = [name for name in record.names if not re.search(rf"\b{name}:", examples)]
    assert missing == [], f"no example of {missing} in the '{record.name}' section"


def test_complete_examples_are_valid() -> None:
    complete = [block for block in yaml_blocks(REFERENCE) if block.startswith("name:")]
    assert len(complete) >= 2
    for block in complete:
        result = check(block)
        assert result.valid, [d.format() for d in result.diagnostics]
