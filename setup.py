"""Packaging for Keras Fleet: the `api` package plus its serving and test dependencies."""

from setuptools import find_packages, setup

setup(
    name="keras-fleet",
    version="0.1.0",
    description="Serve a Keras model over TensorFlow Serving's REST API from a fleet of plain VMs.",
    packages=find_packages(include=["api", "api.*"]),
    python_requires=">=3.10",
    install_requires=[
        "flask>=3.0",
        "flask-restful>=0.3.10",
        "gunicorn>=22.0",
        "keras>=3.3",
        "numpy>=1.26",
        "orjson>=3.9",
        "tensorflow-cpu>=2.16",
    ],
    extras_require={
        # Training the demo model (scikit-learn ships the digits data set).
        "train": ["scikit-learn>=1.3"],
        # The image's offline proof: Packer's amazon-ebs build against a local moto_server.
        "image": ["boto3>=1.34", "moto[server]>=5.0"],
        "test": [
            "boto3>=1.34",
            "moto[server]>=5.0",
            "pytest>=8.0",
            "requests>=2.31",
            "scikit-learn>=1.3",
        ],
    },
)
