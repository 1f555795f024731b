"""ssl-transfer: self-supervised ResNet-50 pretraining and transfer evaluation.

detectron2 is not on PyPI under its own name: `python tools/install_detectron2.py` (run by `make venv`)
installs it; see the README.
"""
from setuptools import find_packages, setup

setup(
    name="ssl-transfer",
    version="0.1.0",
    description="Self-supervised ResNet-50 pretraining (SimCLR, MoCo v2, BYOL, SwAV, SimSiam) and transfer "
    "evaluation (kNN, linear probe, VOC and COCO detection through detectron2)",
    python_requires=">=3.10",
    packages=find_packages(include=["sslt_core", "sslt_demo", "eval", "pretrain", "transfer", "evaluations",
                                    "sslt_pipeline"]),
    # ImageNet 1% / 10% subset lists (Apache 2.0, google-research/simclr; eval/imagenet_subsets/NOTICE)
    package_data={"eval": ["imagenet_subsets/*.txt", "imagenet_subsets/LICENSE", "imagenet_subsets/NOTICE"]},
    install_requires=[
        "torch>=2.5",  # torch.serialization.safe_globals (the weights-only reader)
        "torchvision>=0.20",  # decode_jpeg of a list of images on a device (the tensor data path)
        "fvcore",
        "pycocotools>=2.0.6",
        "scikit-learn",
        "faiss-cpu>=1.7.4",
        "numpy",
        "pillow",
        "pyyaml",
        "safetensors",
        "submitit>=1.5",
        "tqdm",
        "tensorboard",
        "matplotlib",
    ],
    extras_require={
        # On a GPU machine: pip uninstall -y faiss-cpu && pip install -e '.[gpu]' (both ship the module `faiss`).
        "gpu": ["faiss-gpu>=1.15"],
        # Lint tools pinned: a new ruff release adds rules and must not fail CI on its own.
        "dev": ["pytest>=7", "ruff==0.17.6", "import-linter==2.17"],
    },
)
