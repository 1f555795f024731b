"""Small configs of every registered method for tests: its demo preset (configs/pretrain/<method>_demo.yaml) on
a ResNet-18 at 32 px, so that a new method is tested as soon as it has a demo preset."""
from pretrain.config import load_config
from tests.conftest import REPO

# A batch of 16 in MoCo's 8 shuffle-BN sub-batches would leave 2 images per BN group, and at 32 px layer4 sees
# 1x1 maps: BN over 2 values, whose gradients explode. 2 sub-batches of 8 here.
SMALL_BATCH = {"mocov2": ["model.bn_splits=2"]}
# Queue sizes that fill within the first steps of a batch of 16 (only the methods that have a queue).
QUEUE_IN_USE = {"mocov2": ["model.queue_size=32"],
                "swav": ["model.queue_length=32", "model.queue_start_epoch=0", "model.freeze_prototypes_steps=0"]}


def demo_preset(method):
    return REPO / "configs" / "pretrain" / f"{method}_demo.yaml"


def tiny_config(method, data="", arch="resnet18", extra=()):
    return load_config(demo_preset(method), [f"train.data={data}", f"model.arch={arch}", "train.image_size=32",
                                             "train.batch_size=16", "train.epochs=3", "train.workers=0",
                                             "train.knn_every=0", "train.log_every=1",
                                             "train.diagnostics_every=0",
                                             *SMALL_BATCH.get(method, ()), *extra])
