"""Complete dependencies: every project file a stage imports, transitively, and the pinned
requirements are `deps` of that stage in dvc.yaml, so a change to any of them re-runs the
stage and changes the code hash its lock entry (and the approval record) carries."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = "requirements.txt"


def module_file(module: str) -> Path | None:
    """The project file of a dotted module name, or None when it is not the project's."""
    parts = module.split(".")
    for candidate in (ROOT.joinpath(*parts).with_suffix(".py"), ROOT.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Every module an import statement anywhere in ``path`` may load (packages on the way too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from pricing import registry` loads pricing/registry.py if it is a module.
            found = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in found:
            parts = name.split(".")
            names.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return names


def project_imports(entry: Path) -> set[str]:
    """Project files ``entry`` loads, itself included, as paths relative to the project root."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(found for name in imported_modules(path) if (found := module_file(name)) is not None)
    return {path.relative_to(ROOT).as_posix() for path in seen}


def stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def entry_module(stage: dict) -> Path:
    words = stage["cmd"].split()
    assert words[:2] == ["python", "-m"], f"stage cmd is not `python -m <module>`: {stage['cmd']}"
    entry = module_file(words[2])
    assert entry is not None, f"{words[2]} is not a project module"
    return entry


def test_the_walk_sees_transitive_imports():
    # stages.preprocess -> pricing.drift_gate -> pricing.errors, and the packages on the way.
    files = project_imports(ROOT / "stages" / "preprocess.py")
    assert {"pricing/drift_gate.py", "pricing/errors.py", "pricing/__init__.py", "stages/__init__.py",
            "stages/common.py", "pricing/layout.py"} <= files


@pytest.mark.parametrize("name", sorted(stages()))
def test_every_imported_project_file_and_the_requirements_are_deps(name):
    stage = stages()[name]
    deps = set(stage.get("deps", []))
    needed = project_imports(entry_module(stage)) | {REQUIREMENTS}
    missing = sorted(needed - deps)
    assert not missing, f"dvc.yaml stage {name} imports or needs these but does not list them in deps: {missing}"


def declared_outputs(stage: dict) -> set[str]:
    """Every path a stage writes: outs, metrics and plots (a string, or a one-key mapping)."""
    return {next(iter(entry)) if isinstance(entry, dict) else entry
            for kind in ("outs", "metrics", "plots") for entry in stage.get(kind, [])}


def test_the_lineage_order_is_dvc_yamls_dependency_order():
    """`tasks.stages.ALL_STAGES` is the one ordered list (the flow and `lineage_cli reproduce`
    run stages by it): every stage comes after each stage whose output it reads."""
    from tasks.stages import ALL_STAGES

    defined = stages()
    assert set(ALL_STAGES) == set(defined)
    writer = {path: name for name in defined for path in declared_outputs(defined[name])}
    for position, name in enumerate(ALL_STAGES):
        upstream = {writer[dep] for dep in defined[name].get("deps", []) if dep in writer}
        assert upstream or position == 0, f"{name} reads no other stage's output"
        later = sorted(upstream - set(ALL_STAGES[:position]))
        assert not later, f"{name} reads outputs of {later}, which ALL_STAGES puts after it"
