"""Packaging for Keras Fleet: the `api` and `loadtest` packages plus their serving, load-test and test dependencies."""

from pathlib import Path

from setuptools import find_packages, setup

# The AWS fleet's operator commands (scripts/fleetctl.py): boto3 only. cfn-lint and
# checkov are not here: checkov pins boto3 exactly and drags in ~90 packages that
# would downgrade ours; `make test` installs both scanners in their own venv.
AWS = ["boto3>=1.34"]
# The load test's own packages, in a file of their own so that `make loadtest
# LOADTEST_ONLY=1` installs them without the app's (TensorFlow among them).
LOADTEST = [line for line in (Path(__file__).parent / "loadtest" / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]

setup(
    name="keras-fleet",
    version="0.1.0",
    description="Serve a Keras model over TensorFlow Serving's REST API from a fleet of plain VMs.",
    packages=find_packages(include=["api", "api.*", "loadtest", "loadtest.*"]),
    python_requires=">=3.10",
    install_requires=[
        # LiteRT runs the converted graph (api/litert.py); TensorFlow converts it.
        "ai-edge-litert>=1.2",
        "flask>=3.0",
        "flask-restful>=0.3.10",
        # api/worker_sockets.py extends gunicorn 27's gthread worker.
        "gunicorn>=27.0,<28",
        "keras>=3.3",
        "numpy>=1.26",
        "orjson>=3.9",
        "prometheus-client>=0.20",
        "tensorflow-cpu>=2.16",
    ],
    extras_require={
        # Training the demo model (scikit-learn ships the digits data set).
        "train": ["scikit-learn>=1.3"],
        "aws": AWS,
        # Load tests and capacity runs (loadtest/); a load-generator machine that does not
        # serve needs only these: `make loadtest LOADTEST_ONLY=1`.
        "loadtest": LOADTEST,
        # The image's offline proof: Packer's amazon-ebs build against a local moto_server.
        "image": ["boto3>=1.34", "moto[server]>=5.0"],
        "test": [
            *AWS,
            *LOADTEST,
            # moto 5 fakes CloudFormation, EC2, Auto Scaling and ELBv2 in process, and
            # runs as moto_server for the image's Packer build.
            "moto[server,cloudformation,ec2,autoscaling,elbv2,iam]>=5.0",
            "openapi-spec-validator>=0.7",
            # tests/test_lock.py reads requirements and versions as pip does.
            "packaging>=23.0",
            # scripts/bench_ab.py pins each system's threads to its core.
            "psutil>=5.9",
            "pytest>=8.0",
            "pyyaml>=6.0",
            "requests>=2.31",
            "schemathesis>=4.0",
            "scikit-learn>=1.3",
        ],
    },
)
