"""The recipe every algorithm follows, checked: layout, registration, catalogue, torch-free metadata.

``docs/adding-an-algorithm.md`` promises that an algorithm is one package
``algorithms/<key>/{__init__.py (INFO), model.py (pure nn.Module), detector.py (registered class)}``
that the registry finds by itself. These tests hold the promise: they fail when an algorithm
sits outside that layout (and so would not be registered), when a package breaks it, or when
reading metadata needs torch.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from torch import nn

from algorithms import registry
from algorithms.base import AnomalyDetector
from algorithms.registry import (
    AlgorithmPackageError,
    add_algorithm_package,
    builtin_algorithm_packages,
    create_algorithm,
    discover_algorithms,
    get_algorithm_class,
    get_algorithm_info,
    list_algorithms,
    load_algorithm,
)

ROOT = Path(__file__).resolve().parents[2]
ALGORITHMS = ROOT / "algorithms"
EXAMPLE = ROOT / "examples" / "my_algorithm"


# -- layout -----------------------------------------------------------------------------------


def _imports(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
    return names


def _bases(node: ast.ClassDef) -> set[str]:
    return {ast.unparse(base).rpartition(".")[2] for base in node.bases}


def recipe_problems(root: Path, registered: set[str]) -> list[str]:
    """What in the package tree ``root`` breaks the recipe; ``registered``: discovered package names.

    A class deriving from ``AnomalyDetector`` anywhere but in a registered package's
    ``detector.py`` is an algorithm the registry will never find (an ``algorithms/<name>.py``
    module, a package without ``detector.py``, a detector under another file name).
    """
    problems = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if "tests" in relative.parts or relative.as_posix() == "base.py":
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        detectors = [n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and "AnomalyDetector" in _bases(n)]
        in_layout = len(relative.parts) == 2 and relative.name == "detector.py" and relative.parts[0] in registered
        for name in detectors if not in_layout else ():
            problems.append(
                f"{relative}: {name} is an AnomalyDetector outside the recipe; it belongs in "
                f"<package>/detector.py, registered with @register_algorithm(INFO), or the registry never finds it"
            )
    for package in sorted(p.parent for p in root.glob("*/__init__.py")):
        if (package / "detector.py").is_file() and package.name not in registered:
            problems.append(f"{package.name}/: has detector.py but is not registered")
    return problems


def test_every_algorithm_is_a_registered_package_of_the_recipe():
    registered = {p.rpartition(".")[2] for p in builtin_algorithm_packages()}
    assert recipe_problems(ALGORITHMS, registered) == []
    # every built-in package is registered, under the key its INFO declares
    for package in builtin_algorithm_packages():
        info = importlib.import_module(package).INFO
        assert info.key in list_algorithms(), package


def test_the_recipe_check_finds_algorithms_the_registry_would_miss(tmp_path):
    """The check above can fail: an algorithm written beside the recipe is reported."""
    root = tmp_path / "algorithms"
    detector = "from .base import AnomalyDetector\n\nclass Toy(AnomalyDetector):\n    pass\n"
    (root / "good").mkdir(parents=True)
    (root / "good" / "__init__.py").write_text("")
    (root / "good" / "detector.py").write_text(detector.replace(".base", "..base"))
    (root / "toy_module.py").write_text(detector)  # the old single-module shape
    (root / "named_wrong").mkdir()
    (root / "named_wrong" / "__init__.py").write_text("")
    (root / "named_wrong" / "named_wrong.py").write_text(detector.replace(".base", "..base"))
    (root / "forgotten").mkdir()
    (root / "forgotten" / "__init__.py").write_text("")
    (root / "forgotten" / "detector.py").write_text("")
    problems = recipe_problems(root, {"good"})
    assert len(problems) == 3, problems
    assert problems[0].startswith("named_wrong/named_wrong.py: Toy is an AnomalyDetector outside the recipe")
    assert problems[1].startswith("toy_module.py: Toy is an AnomalyDetector outside the recipe")
    assert problems[2] == "forgotten/: has detector.py but is not registered"


@pytest.mark.parametrize("key", list_algorithms())
def test_layout(key):
    """``__init__.py`` holds the record and no torch; ``model.py`` pure modules; ``detector.py`` the class."""
    cls = get_algorithm_class(key)
    package = cls.__module__.rpartition(".")[0]
    assert cls.__module__ == f"{package}.detector", f"{key}: the registered class lives in {cls.__module__}"
    module = importlib.import_module(package)
    assert module.INFO is get_algorithm_info(key), f"{key}: {package}.INFO is not the registered record"
    assert module.__doc__ and len(module.__doc__.strip()) > 80, f"{key}: the package docstring describes the method"
    folder = Path(module.__file__).parent
    assert {"__init__.py", "model.py", "detector.py"} <= {p.name for p in folder.iterdir()}, folder
    init_imports = _imports(ast.parse((folder / "__init__.py").read_text()))
    assert not [i for i in init_imports if i.split(".")[0] == "torch" or i.lstrip(".") in ("detector", "model")], (
        f"{key}: __init__.py must stay torch-free (it imports {init_imports})"
    )
    model = importlib.import_module(f"{package}.model")
    modules = [v for v in vars(model).values() if inspect.isclass(v) and v.__module__ == model.__name__]
    assert any(issubclass(v, nn.Module) for v in modules), f"{key}: model.py defines no torch.nn.Module"
    assert not any(issubclass(v, AnomalyDetector) for v in modules), f"{key}: the detector belongs in detector.py"
    source = (folder / "model.py").read_text()
    for training in ("torch.optim", ".backward(", "register_algorithm", "AnomalyDetector"):
        assert training not in source, f"{key}: model.py is the network only, no training logic ({training})"


def test_every_shared_component_is_catalogued():
    """``algorithms/components/__init__.py`` lists every public name of every components module."""
    import pkgutil

    from algorithms import components

    catalogue = components.__doc__
    missing = []
    for module_info in pkgutil.iter_modules(components.__path__):
        module = importlib.import_module(f"algorithms.components.{module_info.name}")
        assert hasattr(module, "__all__"), f"components/{module_info.name}.py declares no __all__"
        assert f"``{module_info.name}``" in catalogue, f"components/{module_info.name}.py has no catalogue entry"
        missing += [f"{module_info.name}.{name}" for name in module.__all__ if f"``{name}" not in catalogue]
    assert not missing, f"add one line each to the catalogue in algorithms/components/__init__.py: {missing}"


# -- registration -----------------------------------------------------------------------------


def _write_package(root: Path, name: str, *, info: str | None, register: bool = True) -> None:
    package = root / name
    package.mkdir(parents=True)
    shutil.copy(EXAMPLE / "model.py", package / "model.py")
    init = (EXAMPLE / "__init__.py").read_text().replace('key="my_algorithm"', f'key="{info}"')
    (package / "__init__.py").write_text(init if info else '"""No record."""\n')
    detector = (EXAMPLE / "detector.py").read_text()
    if not register:
        detector = detector.replace("@register_algorithm(INFO)\n", "")
    (package / "detector.py").write_text(detector)


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    """A folder on ``sys.path`` for packages written by the test; forgets them afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    keys_before = set(list_algorithms())
    yield tmp_path
    for key in set(registry._INFOS) - keys_before:
        registry.unregister_algorithm(key)
    for name in set(sys.modules) - before:
        if name.startswith(("toy_", "my_algorithm")):
            del sys.modules[name]
    importlib.invalidate_caches()


def test_a_package_without_a_record_or_a_registered_class_fails_loudly(plugin_path):
    _write_package(plugin_path, "toy_norecord", info=None)
    with pytest.raises(AlgorithmPackageError, match=r"toy_norecord has a detector module but its __init__.py .* INFO"):
        add_algorithm_package("toy_norecord")
    _write_package(plugin_path, "toy_unregistered", info="toy_unregistered", register=False)
    assert add_algorithm_package("toy_unregistered").key == "toy_unregistered"
    assert "toy_unregistered" in list_algorithms()  # the record is known without importing the detector...
    with pytest.raises(AlgorithmPackageError, match=r"toy_unregistered.detector registers no class for"):
        get_algorithm_class("toy_unregistered")  # ...and the missing decorator is named when the class is needed
    (plugin_path / "toy_nodetector").mkdir()
    (plugin_path / "toy_nodetector" / "__init__.py").write_text("")
    with pytest.raises(AlgorithmPackageError, match="has no detector module"):
        add_algorithm_package("toy_nodetector")


def test_the_example_package_is_a_complete_algorithm(plugin_path, tmp_path):
    """``examples/my_algorithm`` (what the guide copies) registers, trains, predicts and round-trips."""
    shutil.copytree(EXAMPLE, plugin_path / "my_algorithm")
    info = add_algorithm_package("my_algorithm")
    assert info.key == "my_algorithm" and "my_algorithm" in list_algorithms()
    model = create_algorithm("my_algorithm", tiny=True)
    images = _stripes(4, 64)
    assert set(model.fit_epoch([images[:2], images[2:]])) == {"loss"}
    defective = images.clone()
    defective[1, :, 20:30, 20:30] = 3.0
    prediction = model.predict(defective)
    assert list(prediction.maps) == list(info.map_variants)
    assert prediction.scores[1] > prediction.scores[0]
    loaded = load_algorithm(model.save(tmp_path / "saved"))
    assert (loaded.predict(defective).scores == prediction.scores).all()
    from algorithms.runspec import RunSpec

    RunSpec.from_entry({"algorithm": "my_algorithm", **info.demo}, shared={"categories": ["synthetic/woven"]})


def test_installed_packages_register_through_the_entry_point_group(plugin_path):
    """A third-party package with the same layout, declared under ``visionad.algorithms``."""
    _write_package(plugin_path, "toy_plugin", info="toy_plugin")
    dist = plugin_path / "toy_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\ntoy_plugin = toy_plugin\n")
    importlib.invalidate_caches()
    discover_algorithms(force=True)
    assert "toy_plugin" in list_algorithms()
    assert get_algorithm_class("toy_plugin").__module__ == "toy_plugin.detector"
    (dist / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\nother_name = toy_plugin\n")
    with pytest.raises(AlgorithmPackageError, match=r"entry point 'other_name' .* INFO.key is 'toy_plugin'"):
        discover_algorithms(force=True)
    dist.rename(plugin_path / "gone")
    importlib.invalidate_caches()
    discover_algorithms(force=True)


def test_a_config_may_name_algorithm_packages_by_import_path(plugin_path):
    from algorithms.runspec import ConfigError, load_run_config

    _write_package(plugin_path, "toy_configured", info="toy_configured")
    config = plugin_path / "run.py"
    config.write_text("algorithm_packages = ['toy_configured']\nmodels = [{'algorithm': 'toy_configured'}]\n"
                      "categories = ['synthetic/woven']\n")  # fmt: skip
    (spec,) = load_run_config(config).specs
    assert (spec.algorithm, spec.epochs, spec.batch_size) == ("toy_configured", 100, 16)  # the record's schedule
    config.write_text("algorithm_packages = ['toy_missing']\nmodels = [{'algorithm': 'x'}]\n")
    with pytest.raises(ConfigError, match=r"run.py: 'algorithm_packages': 'toy_missing': ModuleNotFoundError"):
        load_run_config(config)


def _stripes(n: int, size: int):
    import torch

    ys = torch.linspace(0, 6.283, size)
    return torch.sin(ys[None, :] * 3 + ys[:, None]).expand(n, 3, size, size).contiguous()


# -- imports ----------------------------------------------------------------------------------
# No import cycle inside algorithms/, base.py not knowing the registry, and torch-free metadata
# are import-linter contracts (pyproject.toml: no-cycles, algorithm-api-knows-no-registry,
# metadata-without-torch; tests/test_architecture.py breaks each on purpose). This test runs it.


def test_metadata_configs_and_run_specs_need_no_torch():
    """What the web process and config files use never imports torch or a detector."""
    code = textwrap.dedent(
        """
        import sys
        from algorithms import RunSpec, get_algorithm_info, list_algorithms
        from algorithms.runspec import load_run_config
        for key in list_algorithms():
            get_algorithm_info(key).to_json()
        for name in ("paper", "synthetic_cpu", "tiny"):
            config = load_run_config(f"algorithms/configs/{name}.py")
            assert [RunSpec.from_json(s.to_json()) for s in config.specs] == list(config.specs)
        heavy = sorted(m for m in sys.modules if m == "torch" or m.endswith(".detector"))
        assert not heavy, heavy
        print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
