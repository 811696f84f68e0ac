"""environment.yml lists exactly pyproject's dependencies and its book, scale and test extras."""

import pathlib
import tomllib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]


def pyproject_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return project["dependencies"] + extras["book"] + extras["scale"] + extras["test"]


def environment_pip_requirements() -> tuple[list[str], list[str]]:
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in environment["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    return conda, pip


def normalise(requirement: str) -> str:
    return requirement.replace(" ", "").lower()


def test_pip_section_equals_pyproject():
    conda, pip = environment_pip_requirements()
    assert pip[-1] == "-e .", "environment.yml must end by installing the companion itself"
    assert sorted(map(normalise, pip[:-1])) == sorted(map(normalise, pyproject_requirements()))


def test_conda_provides_only_python_and_pip():
    conda, _ = environment_pip_requirements()
    assert sorted(name.split("=")[0] for name in conda) == ["pip", "python"]


def test_python_version_is_supported_by_pyproject():
    conda, _ = environment_pip_requirements()
    python = next(d for d in conda if d.startswith("python"))
    version = tuple(int(x) for x in python.split("=")[1].split("."))
    required = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert version >= tuple(int(x) for x in required.removeprefix(">=").split("."))
