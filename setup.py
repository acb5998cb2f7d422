"""Installs the `torch_sr` package, its shipped weights and the seven command-line tools."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "torch_sr" / "__init__.py").read_text()).group(1)
REQUIREMENTS = [
    line.split("#")[0].strip()
    for line in (HERE / "requirements.txt").read_text().splitlines()
    if line.split("#")[0].strip()
]

setup(
    name="torch_sr",
    version=VERSION,
    description="Super-resolution in PyTorch: ESRGAN/RRDBNet and friends, trained from JSON configs, "
    "scored as the papers score them.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["torch_sr", "torch_sr.*"]),
    package_data={"torch_sr": ["weights/*.pth", "weights/*.json", "weights/*.md", "config/*.json"]},
    install_requires=REQUIREMENTS,
    extras_require={
        # onnx/onnxruntime: the ONNX export is checked against ONNX Runtime (tests skip without them)
        "test": ["pytest>=7", "pytest-timeout>=2", "onnx>=1.14", "onnxruntime>=1.16"],
        "onnx": ["onnx>=1.14", "onnxruntime>=1.16"],
        "lpips": ["lpips>=0.1.4"],
    },
    entry_points={
        "console_scripts": [
            "torch-sr-train=torch_sr.cli.train:main",
            "torch-sr-test=torch_sr.cli.test:main",
            "torch-sr-inference=torch_sr.cli.inference:main",
            "torch-sr-net-interpolation=torch_sr.cli.net_interpolation:main",
            "torch-sr-reproduce=torch_sr.cli.reproduce:main",
            "torch-sr-export=torch_sr.cli.export:main",
            "torch-sr-deepen=torch_sr.cli.deepen:main",
        ]
    },
)
