"""Sub-workflows among several files: resolution, cycles, unknown and invalid children."""

from pathlib import Path

from magicflow.dsl import WorkflowLibrary, WorkflowRef, load_library, parse_workflow, version_key


def workflow(name: str, version: str, *children: str) -> str:
    steps = "".join(f"  - {{id: call-{i}, workflow: {c}}}\n" for i, c in enumerate(children))
    return f'name: {name}\nversion: "{version}"\nsteps:\n  - {{id: work, function: f}}\n{steps}'


def library(**files: str) -> WorkflowLibrary:
    found = WorkflowLibrary()
    for file, text in files.items():
        found.add(parse_workflow(text, file))
    return found


def test_version_order() -> None:
    versions = ["1.10.0", "1.9.2", "2.0.0-rc1", "2.0.0", "1.0"]
    assert sorted(versions, key=version_key) == ["1.0", "1.9.2", "1.10.0", "2.0.0-rc1", "2.0.0"]


def test_resolve_exact_and_latest() -> None:
    found = library(
        a=workflow("kyc", "1.0.0"), b=workflow("kyc", "1.10.0"), c=workflow("kyc", "1.9.0")
    )
    exact = found.resolve(WorkflowRef("kyc", "1.9.0"))
    latest = found.resolve(WorkflowRef("kyc"))
    assert exact is not None
    assert exact.version == "1.9.0"
    assert latest is not None
    assert latest.version == "1.10.0"
    assert found.resolve(WorkflowRef("kyc", "3")) is None


def test_cycle_across_files_is_reported_in_each() -> None:
    found = library(
        **{
            "a.yaml": workflow("alpha", "1", "beta@1"),
            "b.yaml": workflow("beta", "1", "gamma"),
            "c.yaml": workflow("gamma", "1", "alpha@1"),
        }
    )
    diagnostics = found.check()
    assert sorted(d.file for d in diagnostics) == ["a.yaml", "b.yaml", "c.yaml"]
    by_file = {d.file: d for d in diagnostics}
    assert (
        by_file["a.yaml"].message == "sub-workflow cycle: alpha@1 -> beta@1 -> gamma@1 -> alpha@1"
    )
    assert (by_file["a.yaml"].line, by_file["a.yaml"].col) == (5, 28)


def test_unknown_children_only_matter_when_required() -> None:
    found = library(
        **{"a.yaml": workflow("alpha", "1", "kyc-chek", "beta@2")},
        **{"b.yaml": workflow("beta", "1")},
    )
    found.add(parse_workflow(workflow("kyc-check", "1"), "k.yaml"))
    assert found.check() == []
    messages = [d.message for d in found.check(require_known=True)]
    assert messages == [
        "unknown sub-workflow 'kyc-chek' (did you mean 'kyc-check'?)",
        "unknown sub-workflow 'beta@2' (known versions: 1)",
    ]


def test_an_invalid_child_is_named_with_its_first_problem() -> None:
    found = library(
        **{"a.yaml": workflow("alpha", "1", "beta")},
        **{"b.yaml": workflow("beta", "1") + "bogus: 1\n"},
    )
    [diagnostic] = found.check(require_known=True)
    assert diagnostic.message.startswith(
        "sub-workflow 'beta' is defined in b.yaml, which is invalid: b.yaml:"
    )
    assert "unknown key 'bogus'" in diagnostic.message


def test_same_version_with_other_content_is_an_error() -> None:
    found = WorkflowLibrary()
    assert found.add(parse_workflow(workflow("alpha", "1"), "a.yaml")) == []
    assert found.add(parse_workflow(workflow("alpha", "1"), "copy.yaml")) == []
    [diagnostic] = found.add(parse_workflow(workflow("alpha", "1", "beta"), "b.yaml"))
    assert diagnostic.message == "workflow alpha@1 is also defined in copy.yaml, differently"


def test_closure_and_load_library(tmp_path: Path) -> None:
    (tmp_path / "parent.yaml").write_text(workflow("parent", "1", "child@1"))
    (tmp_path / "child.yml").write_text(workflow("child", "1", "leaf"))
    (tmp_path / "leaf.yaml").write_text(workflow("leaf", "2"))
    (tmp_path / "notes.txt").write_text("not yaml")
    (tmp_path / "broken.yaml").write_text(": : :")
    found, results = load_library([tmp_path])
    assert [Path(r.file).name for r in results] == [
        "broken.yaml",
        "child.yml",
        "leaf.yaml",
        "parent.yaml",
    ]
    parent = found.resolve(WorkflowRef("parent"))
    assert parent is not None
    assert {str(ref) for ref in found.closure(parent)} == {"child@1", "leaf"}
    assert found.check(require_known=True) == []  # the broken file is not referenced
