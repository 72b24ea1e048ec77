"""Installable package for the tri-modal masked-diffusion scaling-law lab.

Beyond the mandated stack (jax, flax, optax, orbax-checkpoint, grain, ml-collections,
tensorstore, numpy, pandas, scipy) we depend on:
  - matplotlib: every paper figure is a PNG/PDF drawn by analysis/;
  - tqdm: progress bars on training, tokenization, sweeps and sampling;
  - tokenizers: the byte-level BPE text tokenizer (Rust, fast; loads any tokenizer.json);
  - scikit-learn: ships the 8x8 handwritten digits used by the embedded demo data set, and the
    small classifiers of the demo checkers;
  - pyyaml: the GKE JobSet manifests written by launch/xpk.py.
"""
from setuptools import find_packages, setup

setup(
    name="mdm-lab",
    version="0.1.0",
    description="Tri-modal masked diffusion models and their scaling laws, in JAX/Flax.",
    python_requires=">=3.11",
    packages=find_packages(include=["mdm", "mdm.*", "analysis", "analysis.*", "launch",
                                    "launch.*", "experiments", "experiments.*"]),
    install_requires=[
        "jax>=0.7,<0.14",
        "flax>=0.11,<0.14",
        "optax>=0.2.4,<0.3",
        "orbax-checkpoint>=0.11,<0.14",
        "grain>=0.2.10,<0.3",
        "ml-collections>=1.0,<2",
        "tensorstore>=0.1.70,<0.2",
        "numpy>=1.26,<3",
        "pandas>=2.1,<4",
        "scipy>=1.12,<2",
        "matplotlib>=3.8,<4",
        "tqdm>=4.66,<5",
        "tokenizers>=0.20,<1",
        "scikit-learn>=1.4,<2",
        "pyyaml>=6,<7",
    ],
    extras_require={
        "test": ["pytest>=8,<10", "pytest-timeout>=2.3,<3", "ruff>=0.5", "nbclient>=0.10,<1",
                 "nbformat>=5.10,<6", "ipykernel>=6.29,<8"],
        "tensorboard": ["tensorboardX>=2.6,<3"],
    },
    entry_points={
        "console_scripts": [
            "mdm-train=mdm.train:main",
            "mdm-analysis=analysis.cli:main",
            "mdm-figures=analysis.cli:figures_main",
            "mdm-tokenize=mdm.data.tokenize:main",
            "mdm-plan=mdm.plan:main",
            "mdm-generate=mdm.generate:main",
            "mdm-sample=mdm.generate:main",          # old name of mdm-generate (one release)
            "mdm-launch=launch.cli:main",
        ],
    },
)
