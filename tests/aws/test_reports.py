"""Reading what the other steps leave: Packer's manifest (the AMI) and the capacity report."""

from __future__ import annotations

import json

import pytest

from fleet.capacity import requests_per_instance
from fleet.errors import FleetError
from fleet.manifest import amis_by_region, latest_ami
from tests.aws.fakes import write_manifest

NEW_AMI = "ami-0123456789abcdef0"


def test_the_last_run_wins_and_the_region_picks_the_ami(tmp_path):
    path = write_manifest(tmp_path / "m.json", NEW_AMI)

    assert latest_ami(path, "us-east-1") == NEW_AMI
    assert latest_ami(path, "eu-west-1") == "ami-0bbbbbbbbbbbbbbbb"


def test_an_ami_only_an_older_run_made_is_not_taken(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(
        json.dumps(
            {
                "builds": [
                    {
                        "name": "a",
                        "builder_type": "amazon-ebs",
                        "artifact_id": "ap-south-1:ami-0aaaaaaaaaaaaaaaa",
                        "packer_run_uuid": "old",
                    },
                    {
                        "name": "a",
                        "builder_type": "amazon-ebs",
                        "artifact_id": "eu-west-1:ami-0bbbbbbbbbbbbbbbb",
                        "packer_run_uuid": "new",
                    },
                ],
                "last_run_uuid": "new",
            }
        )
    )

    with pytest.raises(FleetError, match="no AMI in ap-south-1 .only in eu-west-1."):
        latest_ami(path, "ap-south-1")


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no Packer manifest at"),
        ("{not json", "cannot read the Packer manifest"),
        (json.dumps({"builds": [], "last_run_uuid": "x"}), "has no build from its last run"),
        (
            json.dumps(
                {"builds": [{"artifact_id": "us-east-1:not-an-ami", "packer_run_uuid": "x"}], "last_run_uuid": "x"}
            ),
            "is not an AMI id",
        ),
    ],
)
def test_a_bad_manifest_says_what_to_do(tmp_path, content, message):
    path = tmp_path / "m.json"
    if content is not None:
        path.write_text(content)

    with pytest.raises(FleetError, match=message):
        latest_ami(path, "us-east-1")


def test_artifact_ids_split_by_region():
    assert amis_by_region("us-east-1:ami-1, eu-west-1:ami-2") == {"us-east-1": "ami-1", "eu-west-1": "ami-2"}
    assert amis_by_region("") == {}


def test_capacity_gives_the_recommended_requests_per_instance(tmp_path):
    path = tmp_path / "capacity.json"
    assert requests_per_instance(path) is None
    path.write_text(json.dumps({"max_sustained_rps": 50, "recommended_alb_request_count_per_target": 2400}))
    assert requests_per_instance(path) == 2400


def test_a_capacity_report_where_no_step_met_the_slo_says_what_to_do(tmp_path):
    path = tmp_path / "capacity.json"
    path.write_text(json.dumps({"max_sustained_rps": 0, "recommended_alb_request_count_per_target": 0}))

    with pytest.raises(FleetError, match=r"no load step met the SLO .*STACK_PARAMS=TargetRequestsPerInstance=N"):
        requests_per_instance(path)


@pytest.mark.parametrize("value", [-5, 12.5, "2400", True, False, None])
def test_a_capacity_that_is_no_positive_integer_is_refused(tmp_path, value):
    path = tmp_path / "capacity.json"
    path.write_text(json.dumps({"recommended_alb_request_count_per_target": value}))

    with pytest.raises(FleetError, match="positive integer"):
        requests_per_instance(path)
