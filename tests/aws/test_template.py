"""deploy/aws/fleet.yaml: linted, scanned, and in agreement with the app's own numbers.

cfn-lint and checkov run from their own venv (IAC_VENV, made by `make test`): checkov
pins packages that would downgrade the app's.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml

from api.config import Config
from fleet.resources import OUTPUTS
from fleet.stack import MAX_TEMPLATE_BODY
from tests.aws.fakes import TEMPLATE
from tests.stack import REPO

# The app is ready 5-20 s after its workers start (model load and warm-up).
APP_WARMUP_MAX_SECONDS = 20
NGINX_SITE = REPO / "deploy" / "nginx" / "keras-fleet.conf"


class CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, ...) read as their long form."""


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


CloudFormationLoader.add_multi_constructor("!", _tag)


@pytest.fixture(scope="module")
def template() -> dict:
    return yaml.load(TEMPLATE.read_text(), Loader=CloudFormationLoader)


@pytest.fixture(scope="module")
def resources(template) -> dict:
    return template["Resources"]


def properties(resources, name) -> dict:
    return resources[name]["Properties"]


def attributes(items: list) -> dict:
    """Key/Value attribute lists as a dict (conditional entries left out)."""
    return {item["Key"]: item["Value"] for item in items if "Key" in item}


def tool(name: str) -> str:
    venv = REPO / os.environ.get("IAC_VENV", ".venv-iac")
    path = venv / "bin" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: `make test` installs cfn-lint and checkov into {venv}")
    return str(path)


def test_cfn_lint_finds_nothing():
    result = subprocess.run([tool("cfn-lint"), str(TEMPLATE)], capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_finds_nothing_beyond_the_justified_skips():
    # Offline: no update check, no guideline download.
    env = {**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true", "BC_SKIP_MAPPING": "TRUE"}
    result = subprocess.run(
        [
            tool("checkov"),
            "--quiet",
            "--compact",
            "--skip-download",
            "--framework",
            "cloudformation",
            "-f",
            str(TEMPLATE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Failed checks: 0" in result.stdout


def test_every_skipped_check_is_justified_in_the_metadata(resources, template):
    skips = [
        (name, skip)
        for name, r in resources.items()
        for skip in r.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips, "the template has checkov skips; this test reads them"
    for name, skip in skips:
        assert re.match(r"^CKV2?_AWS_\d+$", skip["id"]), (name, skip)
        assert len(skip.get("comment", "")) > 40, f"{name}: say why {skip['id']} is skipped"
    # cfn-lint needs no exception; one added later must be justified like the skips above.
    assert "cfn-lint" not in template.get("Metadata", {})
    assert not [name for name, r in resources.items() if "cfn-lint" in r.get("Metadata", {})]


def test_every_resource_is_commented():
    lines = TEMPLATE.read_text().split("\n")
    start, end = lines.index("Resources:"), next(i for i, line in enumerate(lines) if line.startswith("Outputs:"))
    for i in range(start + 1, end):
        if re.match(r"^  [A-Za-z0-9]+:$", lines[i]):
            before = next(line for line in reversed(lines[start:i]) if line.strip())
            assert before.startswith("  # ") and "---" not in before, f"{lines[i].strip()} needs a comment saying why"


def test_the_template_fits_in_a_request_body():
    assert len(TEMPLATE.read_bytes()) < MAX_TEMPLATE_BODY


def test_no_instance_gets_traffic_before_it_is_warm(resources):
    group = properties(resources, "TargetGroup")
    assert group["HealthCheckPath"] == "/healthz/ready"
    assert group["Matcher"] == {"HttpCode": "200"}
    # Consecutive successes span longer than the app takes to warm all its workers.
    assert group["HealthyThresholdCount"] * group["HealthCheckIntervalSeconds"] > APP_WARMUP_MAX_SECONDS
    assert group["HealthCheckTimeoutSeconds"] < group["HealthCheckIntervalSeconds"]
    assert attributes(group["TargetGroupAttributes"])["slow_start.duration_seconds"] == {"Ref": "SlowStartSeconds"}
    asg = properties(resources, "AutoScalingGroup")
    assert asg["HealthCheckType"] == "ELB"
    time_to_healthy = group["HealthyThresholdCount"] * group["HealthCheckIntervalSeconds"] + APP_WARMUP_MAX_SECONDS
    assert asg["HealthCheckGracePeriod"] > time_to_healthy
    assert asg["DefaultInstanceWarmup"] >= 60  # one alarm period sees the new instance's traffic


def test_draining_is_sized_to_the_request_timeout(resources):
    config = Config.from_env(environ={})
    delay = int(
        attributes(properties(resources, "TargetGroup")["TargetGroupAttributes"])[
            "deregistration_delay.timeout_seconds"
        ]
    )
    assert config.timeout <= delay < 300
    assert config.graceful_timeout < delay


def test_the_load_balancer_closes_idle_connections_before_nginx(resources):
    nginx_keepalive = int(re.search(r"keepalive_timeout\s+(\d+)s;", NGINX_SITE.read_text()).group(1))
    lb = attributes(properties(resources, "LoadBalancer")["LoadBalancerAttributes"])
    assert int(lb["idle_timeout.timeout_seconds"]) < nginx_keepalive
    assert lb["routing.http.drop_invalid_header_fields.enabled"] == "true"


def test_https_with_a_certificate_and_http_redirected_to_it(resources):
    https = resources["HttpsListener"]
    assert https["Condition"] == "HasCertificate"
    assert https["Properties"]["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"  # TLS 1.2 and 1.3 only
    condition, with_certificate, without = properties(resources, "HttpListener")["DefaultActions"]["Fn::If"]
    assert condition == "HasCertificate"
    assert with_certificate[0]["Type"] == "redirect" and with_certificate[0]["RedirectConfig"]["Protocol"] == "HTTPS"
    assert without[0]["Type"] == "forward"


def test_instances_accept_http_from_the_load_balancer_and_metrics_from_monitoring_only(resources, template):
    assert "SecurityGroupIngress" not in properties(resources, "InstanceSecurityGroup")
    ingress = {
        name: r
        for name, r in resources.items()
        if r["Type"] == "AWS::EC2::SecurityGroupIngress"
        and r["Properties"]["GroupId"] == {"Ref": "InstanceSecurityGroup"}
    }
    assert set(ingress) == {"InstanceHttpFromLoadBalancer", "InstanceMetricsFromMonitoring"}
    http = ingress["InstanceHttpFromLoadBalancer"]["Properties"]
    assert (http["FromPort"], http["ToPort"]) == (80, 80)
    assert http["SourceSecurityGroupId"] == {"Ref": "LoadBalancerSecurityGroup"} and "CidrIp" not in http
    metrics = ingress["InstanceMetricsFromMonitoring"]
    assert metrics["Condition"] == "HasMonitoring"
    assert metrics["Properties"]["FromPort"] == metrics["Properties"]["ToPort"] == {"Ref": "MetricsPort"}
    assert metrics["Properties"]["CidrIp"] == {"Ref": "MonitoringCidr"}
    assert template["Parameters"]["MetricsPort"]["Default"] == Config.from_env(environ={}).metrics_port
    assert template["Parameters"]["MonitoringCidr"]["Default"] == ""


def test_instances_require_imdsv2_get_no_public_ip_and_a_narrow_role(resources):
    data = properties(resources, "LaunchTemplate")["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert [nic["AssociatePublicIpAddress"] for nic in data["NetworkInterfaces"]] == [False]
    assert data["IamInstanceProfile"] == {"Arn": {"Fn::GetAtt": ["InstanceProfile", "Arn"]}}
    role = properties(resources, "InstanceRole")
    assert role["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"}
    ]
    statements = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    actions = {a for s in statements for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    assert all(a.startswith("logs:") or a == "cloudwatch:PutMetricData" for a in actions), actions


def test_spot_is_optional_through_a_mixed_instances_policy(resources):
    asg = properties(resources, "AutoScalingGroup")
    assert asg["MixedInstancesPolicy"]["Fn::If"][0] == "UsesSpot"
    assert asg["LaunchTemplate"]["Fn::If"][0] == "UsesSpot"


def test_scaling_tracks_requests_per_target(resources):
    tracking = properties(resources, "RequestCountScaling")["TargetTrackingConfiguration"]
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == "ALBRequestCountPerTarget"
    assert tracking["TargetValue"] == {"Ref": "TargetRequestsPerInstance"}


def test_the_roll_alarms_watch_5xx_rate_and_p99_latency(resources):
    rate = properties(resources, "Target5xxAlarm")
    metrics = {m["MetricStat"]["Metric"]["MetricName"] for m in rate["Metrics"] if "MetricStat" in m}
    assert metrics == {"HTTPCode_Target_5XX_Count", "RequestCount"}
    latency = properties(resources, "LatencyAlarm")
    assert (latency["MetricName"], latency["ExtendedStatistic"]) == ("TargetResponseTime", "p99")


ALARMS = ("Target5xxAlarm", "LatencyAlarm", "NoHealthyInstancesAlarm")


def test_every_alarm_notifies_the_alarm_topic_when_one_is_given_and_no_one_otherwise(template, resources):
    assert {name for name, resource in resources.items() if resource["Type"] == "AWS::CloudWatch::Alarm"} == set(ALARMS)
    assert template["Conditions"]["HasAlarmTopic"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}
    notify = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    for alarm in ALARMS:
        assert properties(resources, alarm)["AlarmActions"] == notify, alarm
        assert properties(resources, alarm)["OKActions"] == notify, alarm  # and when it clears
    assert template["Parameters"]["AlarmTopicArn"]["Default"] == ""


@pytest.mark.parametrize("arn, valid", [
    ("", True),
    ("arn:aws:sns:us-east-1:123456789012:keras-fleet-pages", True),
    ("arn:aws-us-gov:sns:us-gov-west-1:123456789012:pages_2", True),
    ("arn:aws:sqs:us-east-1:123456789012:queue", False),  # an SQS queue cannot take alarm actions
    ("arn:aws:sns:us-east-1:1234:pages", False),
    ("keras-fleet-pages", False),
])
def test_the_alarm_topic_must_be_an_sns_topic_arn(template, arn, valid):
    assert bool(re.fullmatch(template["Parameters"]["AlarmTopicArn"]["AllowedPattern"], arn)) is valid


def test_a_fleet_with_no_healthy_instance_pages_though_no_instance_answers_5xx(resources):
    alarm = properties(resources, "NoHealthyInstancesAlarm")
    assert (alarm["MetricName"], alarm["Statistic"]) == ("HealthyHostCount", "Minimum")
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("LessThanThreshold", 1)
    assert {d["Name"] for d in alarm["Dimensions"]} == {"LoadBalancer", "TargetGroup"}


def test_the_commands_find_what_they_need_in_the_outputs_and_parameters(template):
    assert set(OUTPUTS) <= set(template["Outputs"])
    # The ones `make stack` passes, and those the README tells operators to set.
    named = (
        "VpcId LoadBalancerSubnetIds InstanceSubnetIds ImageId TargetRequestsPerInstance InstanceType MinSize MaxSize"
    )
    assert set(f"{named} DesiredCapacity CertificateArn MonitoringCidr".split()) <= set(template["Parameters"])
