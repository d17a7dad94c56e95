from __future__ import annotations

import sys
import textwrap
from enum import StrEnum
from pathlib import Path

import pytest

import magicflow
from magicflow.errors import ConfigurationError
from magicflow.executor import Registry, StepContext, load_handlers


class Step(StrEnum):
    StepValidateUser = "validate-user"
    StepSendWelcome = "send-welcome"


def validate_user(ctx: StepContext) -> dict[str, str]:
    return {"email": ctx.input["email"]}


async def send(ctx: StepContext) -> None:
    return None


# ------------------------------------------------------------------ decorator forms


def test_bare_decorator_registers_under_the_function_name() -> None:
    registry = Registry()
    decorated = registry.function(validate_user)
    assert decorated is validate_user
    handler = registry.lookup("validate_user")
    assert handler is not None
    assert handler.fn is validate_user
    assert handler.key == "validate_user"
    assert not handler.is_async


def test_decorator_with_an_explicit_name_and_async_function() -> None:
    registry = Registry()
    decorated = registry.function("send_email")(send)
    assert decorated is send
    handler = registry.lookup("send_email")
    assert handler is not None
    assert handler.is_async
    assert registry.lookup("send") is None


def test_decorator_called_without_a_name() -> None:
    registry = Registry()

    @registry.function()
    def charge_item(ctx: StepContext) -> int:
        return 1

    assert registry.names() == ["charge_item"]


def test_object_with_async_call_is_async() -> None:
    class Handler:
        __name__ = "callable_object"

        async def __call__(self, ctx: StepContext) -> int:
            return 1

    registry = Registry()
    registry.function(Handler())
    handler = registry.lookup("callable_object")
    assert handler is not None
    assert handler.is_async


def test_module_decorator_fills_the_default_registry(clean_default_registry: Registry) -> None:
    @magicflow.function
    def create_account(ctx: StepContext) -> dict[str, int]:
        return {"user_id": 1}

    @magicflow.function("send_email")
    async def send_it(ctx: StepContext) -> None:
        return None

    assert magicflow.default_registry() is clean_default_registry
    assert clean_default_registry.names() == ["create_account", "send_email"]
    assert "send_email" in clean_default_registry
    assert create_account({}) == {"user_id": 1}  # type: ignore[arg-type]


# ------------------------------------------------------------------ step constants and lookup


def test_step_constant_registration_is_keyed_by_step_id_and_wins() -> None:
    registry = Registry()
    registry.register("validate_user", validate_user)

    def special(ctx: StepContext) -> str:
        return "special"

    registry.register(Step.StepValidateUser, special)
    assert registry.step_ids() == ["validate-user"]
    assert Step.StepValidateUser in registry
    found = registry.lookup("validate_user", "validate-user")
    assert found is not None
    assert found.fn is special
    # another step calling the same function gets the function registration
    other = registry.lookup("validate_user", "other-step")
    assert other is not None
    assert other.fn is validate_user
    # without a step id (fallback, compensation): by function name only
    plain = registry.lookup("validate_user")
    assert plain is not None
    assert plain.fn is validate_user


def test_step_constant_alone_serves_any_function_name() -> None:
    registry = Registry()
    registry.register(Step.StepSendWelcome, send)
    assert registry.lookup("whatever", "send-welcome") is not None
    assert registry.lookup("whatever", "validate-user") is None
    assert registry.names() == []
    assert len(registry) == 1


# ------------------------------------------------------------------ duplicates and bad keys


def test_duplicate_name_is_a_configuration_error() -> None:
    registry = Registry()
    registry.register("validate_user", validate_user)

    def other(ctx: StepContext) -> None:
        return None

    with pytest.raises(ConfigurationError) as caught:
        registry.register("validate_user", other)
    message = str(caught.value)
    assert "function 'validate_user' is already registered by" in message
    assert "test_registry.validate_user" in message
    assert "other" in message


def test_duplicate_step_constant_is_a_configuration_error() -> None:
    registry = Registry()
    registry.register(Step.StepSendWelcome, send)
    with pytest.raises(ConfigurationError, match="step 'send-welcome' is already registered"):
        registry.register(Step.StepSendWelcome, validate_user)


def test_registering_the_same_function_twice_is_harmless() -> None:
    registry = Registry()
    registry.register("validate_user", validate_user)
    registry.register("validate_user", validate_user)
    assert registry.names() == ["validate_user"]


@pytest.mark.parametrize("key", ["", " padded ", 42])
def test_bad_keys_are_rejected(key: object) -> None:
    with pytest.raises(ConfigurationError, match="cannot register"):
        Registry().register(key, validate_user)  # type: ignore[arg-type]


def test_lambda_needs_an_explicit_name() -> None:
    registry = Registry()
    with pytest.raises(ConfigurationError, match="no usable __name__"):
        registry.function(lambda ctx: None)
    registry.register("anonymous", lambda ctx: None)
    assert registry.names() == ["anonymous"]


def test_update_merges_and_detects_conflicts() -> None:
    first, second = Registry(), Registry()
    first.register("validate_user", validate_user)
    second.register("send_email", send)
    second.register(Step.StepValidateUser, validate_user)
    first.update(second)
    assert first.names() == ["send_email", "validate_user"]
    assert first.step_ids() == ["validate-user"]
    third = Registry()
    third.register("send_email", validate_user)
    with pytest.raises(ConfigurationError):
        first.update(third)


# ------------------------------------------------------------------ load_handlers


@pytest.fixture
def restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))


HANDLERS = """\
from enum import StrEnum

import magicflow
from helper_module import GREETING


class Step(StrEnum):
    StepSendWelcome = "send-welcome"


@magicflow.function
def validate_user(ctx):
    return {"email": ctx.input["email"].lower()}


@magicflow.function("send_email")
async def send(ctx):
    return GREETING


registry = magicflow.Registry()
registry.register(Step.StepSendWelcome, send)
"""


@pytest.mark.usefixtures("restore_sys_path")
def test_load_handlers_from_a_file_path(tmp_path: Path, clean_default_registry: Registry) -> None:
    (tmp_path / "helper_module.py").write_text("GREETING = 'hello'\n")
    path = tmp_path / "handlers.py"
    path.write_text(HANDLERS)
    registry = load_handlers(str(path))
    assert registry.names() == ["send_email", "validate_user"]
    assert registry.step_ids() == ["send-welcome"]
    send_welcome = registry.lookup("x", "send-welcome")
    assert send_welcome is not None
    assert send_welcome.is_async
    # loading it again does not run the module again (no duplicate registration)
    again = load_handlers(str(path))
    assert again.names() == registry.names()


@pytest.mark.usefixtures("restore_sys_path")
def test_load_handlers_by_module_name(tmp_path: Path, clean_default_registry: Registry) -> None:
    package = tmp_path / "mfpkg_for_test"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (tmp_path / "helper_module.py").write_text("GREETING = 'hi'\n")
    (package / "handlers.py").write_text(HANDLERS)
    sys.path.insert(0, str(tmp_path))
    try:
        registry = load_handlers("mfpkg_for_test.handlers")
    finally:
        for name in ("mfpkg_for_test", "mfpkg_for_test.handlers", "helper_module"):
            sys.modules.pop(name, None)
    assert registry.names() == ["send_email", "validate_user"]
    assert registry.step_ids() == ["send-welcome"]


def _one_line(error: ConfigurationError) -> str:
    message = str(error)
    assert "\n" not in message
    assert "Traceback" not in message
    return message


@pytest.mark.usefixtures("restore_sys_path", "clean_default_registry")
def test_broken_handlers_file_is_one_readable_line(tmp_path: Path) -> None:
    path = tmp_path / "broken_handlers.py"
    path.write_text("import magicflow\n\nvalue = undefined_name + 1\n")
    with pytest.raises(ConfigurationError) as caught:
        load_handlers(str(path))
    message = _one_line(caught.value)
    assert message.startswith(f"cannot load handlers file {path}: ")
    assert f"{path}:3: NameError: name 'undefined_name' is not defined" in message
    assert isinstance(caught.value.__cause__, NameError)


@pytest.mark.usefixtures("restore_sys_path", "clean_default_registry")
def test_handlers_file_with_a_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "syntax_handlers.py"
    path.write_text("def f(:\n    pass\n")
    with pytest.raises(ConfigurationError) as caught:
        load_handlers(str(path))
    message = _one_line(caught.value)
    assert f"{path}:1: SyntaxError:" in message


@pytest.mark.usefixtures("restore_sys_path", "clean_default_registry")
def test_handlers_file_with_a_missing_dependency(tmp_path: Path) -> None:
    path = tmp_path / "dep_handlers.py"
    path.write_text("import magicflow\nimport no_such_dependency_xyz\n")
    with pytest.raises(ConfigurationError) as caught:
        load_handlers(str(path))
    message = _one_line(caught.value)
    assert f"{path}:2: ModuleNotFoundError: No module named 'no_such_dependency_xyz'" in message


@pytest.mark.usefixtures("restore_sys_path", "clean_default_registry")
def test_handlers_file_with_a_duplicate_registration(tmp_path: Path) -> None:
    path = tmp_path / "dup_handlers.py"
    path.write_text(
        textwrap.dedent(
            """\
            import magicflow

            @magicflow.function
            def charge(ctx):
                return 1

            @magicflow.function("charge")
            def charge_again(ctx):
                return 2
            """
        )
    )
    with pytest.raises(ConfigurationError) as caught:
        load_handlers(str(path))
    message = _one_line(caught.value)
    assert "ConfigurationError: function 'charge' is already registered by" in message
    assert "charge_again" in message


@pytest.mark.usefixtures("restore_sys_path")
def test_missing_file_and_missing_module(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="handlers file not found"):
        load_handlers(str(tmp_path / "nope.py"))
    with pytest.raises(ConfigurationError) as caught:
        load_handlers("no_such_handlers_module_xyz")
    assert _one_line(caught.value).startswith(
        "cannot import handlers module 'no_such_handlers_module_xyz': no module named"
    )
    with pytest.raises(ConfigurationError, match="needs a module name"):
        load_handlers("  ")
