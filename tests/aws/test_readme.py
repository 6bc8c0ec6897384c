"""The README's operations section names only targets, variables and parameters that exist."""

from __future__ import annotations

import re

import yaml

from tests.aws.fakes import TEMPLATE
from tests.stack import REPO


def operations() -> str:
    readme = (REPO / "README.md").read_text()
    return readme[readme.index("## Operations (AWS)") :]


def test_the_fleet_targets_and_variables_exist_in_the_makefile():
    makefile = (REPO / "Makefile").read_text()
    section = operations()
    for target in ("stack", "roll", "status", "rollback", "teardown"):
        assert f"`make {target}" in section
        assert re.search(rf"^{target}: .*## ", makefile, re.M), f"make {target} is missing or undocumented"
    table = section[section.index("| variable |") : section.index("Without credentials")]
    for variable in re.findall(r"^\| `([A-Z_]+)`", table, re.M):
        assert re.search(rf"^{variable}\s+\?=", makefile, re.M), f"{variable} is not a ?= variable of the Makefile"


def test_the_template_parameters_it_names_exist():
    names = set(yaml.load(TEMPLATE.read_text(), Loader=_IgnoreTags)["Parameters"])
    section = operations()
    given = set(re.findall(r"\b([A-Z][A-Za-z0-9]+)=", " ".join(re.findall(r'STACK_PARAMS="([^"]+)"', section))))
    assert given and given <= names, given - names
    described = {
        "TargetRequestsPerInstance",
        "MinSize",
        "MaxSize",
        "DesiredCapacity",
        "Max5xxPercent",
        "MaxP99Seconds",
        "MonitoringCidr",
        "MetricsPort",
        "InstanceType",
    }
    assert described <= names
    assert all(f"`{name}`" in section for name in described)


class _IgnoreTags(yaml.SafeLoader):
    """Reads the template's structure, taking CloudFormation's !Tags as plain values."""


_IgnoreTags.add_multi_constructor("!", lambda loader, suffix, node: None)
