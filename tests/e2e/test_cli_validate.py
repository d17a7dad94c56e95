"""``magic-flow validate`` and ``magic-flow schema`` as a user runs them: real processes."""

import json
import subprocess
import sys
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ONBOARDING = str(EXAMPLES / "user-onboarding" / "workflow.yaml")
BROKEN = """\
name: broken
version: 1.0
timeout_action: fial
steps:
  - id: validate-user
    function: validate_user
  - id: create-account
    function: create_account
    depend_on: [validate-user]
  - id: send-welcome
    function: send_email
    depends_on: [create-acount]
"""


def magic_flow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "magicflow", *args], capture_output=True, text=True, timeout=60
    )


def write(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.write_text(text)
    return str(path)


def test_a_valid_file_says_ok_and_exits_0() -> None:
    done = magic_flow("validate", ONBOARDING)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{ONBOARDING}: ok\n"


def test_every_problem_compiler_style_and_exit_2(tmp_path: Path) -> None:
    broken = write(tmp_path, "broken.yaml", BROKEN)
    done = magic_flow("validate", broken)
    assert done.returncode == 2
    assert done.stdout.splitlines() == [
        f"{broken}:2:10: error: 'version' must be a string, not a number; "
        'quote it: version: "1.0"',
        f"{broken}:3:17: error: invalid 'timeout_action' 'fial': expected 'fail' or 'cancel' "
        "(did you mean 'fail'?)",
        f"{broken}:9:5: error: unknown key 'depend_on' (did you mean 'depends_on'?)",
        f"{broken}:12:18: error: unknown step 'create-acount' in depends_on "
        "(did you mean 'create-account'?)",
    ]
    assert done.stderr == "4 errors in 1 file\n"


def test_several_files_and_a_missing_one(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    broken = write(tmp_path, "broken.yaml", BROKEN)
    done = magic_flow("validate", ONBOARDING, missing, broken)
    assert done.returncode == 2
    lines = done.stdout.splitlines()
    assert lines[0] == f"{ONBOARDING}: ok"
    assert lines[1] == f"{missing}:1:1: error: cannot read the file: No such file or directory"
    assert len(lines) == 6
    assert "Traceback" not in done.stderr


def test_json_output(tmp_path: Path) -> None:
    broken = write(tmp_path, "broken.yaml", BROKEN)
    done = magic_flow("validate", "--format", "json", ONBOARDING, broken)
    assert done.returncode == 2
    report = json.loads(done.stdout)
    assert report["valid"] is False
    ok, bad = report["files"]
    assert ok == {"file": ONBOARDING, "valid": True, "diagnostics": []}
    assert bad["valid"] is False
    assert bad["diagnostics"][2] == {
        "file": broken,
        "line": 9,
        "col": 5,
        "severity": "error",
        "message": "unknown key 'depend_on' (did you mean 'depends_on'?)",
        "path": ["steps", 1, "depend_on"],
    }
    assert json.loads(magic_flow("validate", "--format", "json", ONBOARDING).stdout)["valid"]


def test_sub_workflow_cycle_across_files(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", 'name: a\nversion: "1"\nsteps: [{id: x, workflow: b}]\n')
    second = write(tmp_path, "b.yaml", 'name: b\nversion: "1"\nsteps: [{id: y, workflow: a@1}]\n')
    done = magic_flow("validate", first, second)
    assert done.returncode == 2
    assert done.stdout.splitlines() == [
        f"{first}:3:27: error: sub-workflow cycle: a@1 -> b@1 -> a@1",
        f"{second}:3:27: error: sub-workflow cycle: b@1 -> a@1 -> b@1",
    ]
    assert magic_flow("validate", first).returncode == 0  # the child is unknown: fine alone


def test_garbage_gets_diagnostics_not_tracebacks(tmp_path: Path) -> None:
    binary = tmp_path / "image.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\xff")
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"a: " + b"x" * (3 << 20))
    done = magic_flow("validate", str(binary), str(huge), str(tmp_path))
    assert done.returncode == 2
    assert len(done.stdout.splitlines()) == 3
    assert "binary data" in done.stdout
    assert "the limit is 1,048,576 bytes" in done.stdout
    assert "Traceback" not in done.stderr


def test_schema_is_json_schema_that_accepts_the_examples() -> None:
    done = magic_flow("schema")
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    for path in EXAMPLES.glob("*/*.yaml"):
        assert list(validator.iter_errors(yaml.safe_load(path.read_text()))) == [], path
    assert list(validator.iter_errors({"name": "x", "version": "1", "steps": [], "bogus": 1}))


def test_validating_a_small_file_imports_nothing_heavy(tmp_path: Path) -> None:
    small = write(tmp_path, "small.yaml", 'name: s\nversion: "1"\nsteps: [{id: a, function: f}]\n')
    probe = (
        "import sys\n"
        "from magicflow.dsl import load_workflow\n"
        f"assert load_workflow({small!r}).valid\n"
        "heavy = {'jsonschema', 'fastapi', 'uvicorn', 'asyncpg', 'redis', 'aio_pika', 'nats'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_standard_input() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "magicflow", "validate", "-"],
        input='name: s\nversion: "1"\nsteps: [{id: a, functon: f}]\n',
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout.splitlines()[0].startswith("<stdin>:3:")
