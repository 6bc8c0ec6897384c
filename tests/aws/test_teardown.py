"""`make teardown` against moto: nothing happens unconfirmed; confirmed, the stack and what it made go.

A busy stack and a failed deletion (which moto does not produce) come from a Stubber.
"""

from __future__ import annotations

from fleet.cli import main
from fleet.resources import describe_stack
from tests.aws.fakes import NO_WAIT, STACK
from tests.aws.test_stack import described, event, only, stubbed_cloudformation, STACK_ID


def teardown(clients, *args):
    return main(["--stack-name", STACK, "teardown", *args], clients=clients, **NO_WAIT)


def test_unconfirmed_it_deletes_nothing_and_says_how(clients, deployed, capsys):
    assert teardown(clients) == 1
    assert teardown(clients, "--confirm", "some-other-stack") == 1
    assert f"`make teardown CONFIRM={STACK}`" in capsys.readouterr().err
    assert describe_stack(clients.cloudformation, STACK)["StackStatus"] == "CREATE_COMPLETE"


def test_confirmed_the_stack_and_its_instances_go_and_the_amis_stay(clients, deployed, network, capsys):
    assert clients.autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
    assert teardown(clients, "--confirm", STACK) == 0
    assert describe_stack(clients.cloudformation, STACK) is None
    assert clients.autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"] == []
    images = clients.ec2.describe_images(ImageIds=[network["old_ami"], network["new_ami"]])["Images"]
    assert len(images) == 2
    out = capsys.readouterr().out
    assert f"deleting stack {STACK}" in out and "the AMIs and their snapshots stay" in out


def test_without_a_stack_there_is_nothing_to_do(clients, capsys):
    assert teardown(clients, "--confirm", STACK) == 0
    assert "nothing to delete" in capsys.readouterr().out


def test_a_busy_stack_is_left_to_settle(capsys):
    client, stubber = stubbed_cloudformation()
    stubber.add_response("describe_stacks", described("UPDATE_IN_PROGRESS"), {"StackName": STACK})
    with stubber:
        assert teardown(only(client), "--confirm", STACK) == 1
    stubber.assert_no_pending_responses()  # and delete_stack never called
    assert "is busy (UPDATE_IN_PROGRESS)" in capsys.readouterr().err


def test_a_failed_deletion_shows_what_held_it(capsys):
    client, stubber = stubbed_cloudformation()
    stubber.add_response("describe_stacks", described("CREATE_COMPLETE"), {"StackName": STACK})
    stubber.add_response("describe_stack_events", {"StackEvents": [
        event(1, STACK, "AWS::CloudFormation::Stack", "CREATE_COMPLETE")]}, {"StackName": STACK_ID})
    stubber.add_response("delete_stack", {}, {"StackName": STACK_ID})
    stubber.add_response("describe_stacks", described("DELETE_FAILED"), {"StackName": STACK_ID})
    reason = "resource sg-0abc has a dependent object"
    stubber.add_response("describe_stack_events", {"StackEvents": [
        event(3, STACK, "AWS::CloudFormation::Stack", "DELETE_FAILED"),
        event(2, "InstanceSecurityGroup", "AWS::EC2::SecurityGroup", "DELETE_FAILED", reason),
        event(1, STACK, "AWS::CloudFormation::Stack", "CREATE_COMPLETE"),
    ]}, {"StackName": STACK_ID})
    with stubber:
        assert teardown(only(client), "--confirm", STACK) == 1
    stubber.assert_no_pending_responses()
    captured = capsys.readouterr()
    assert "DELETE_FAILED" in captured.out and "InstanceSecurityGroup" in captured.out
    assert f"stack {STACK} ended DELETE_FAILED: InstanceSecurityGroup: {reason}" in captured.err
    assert "CREATE_COMPLETE" not in captured.out  # the events before the deletion are not its own
