"""The registry of methods: name -> (config dataclass, module). A new method is one file plus one line here;
the tests loop over this table, and its demo preset (configs/pretrain/<name>_demo.yaml) is what they run."""
from pretrain.byol import BYOL, BYOLConfig
from pretrain.mocov2 import MoCoV2, MoCoV2Config
from pretrain.simclr import SimCLR, SimCLRConfig
from pretrain.simsiam import SimSiam, SimSiamConfig
from pretrain.swav import SwAV, SwAVConfig

METHODS = {
    "simclr": (SimCLRConfig, SimCLR),
    "mocov2": (MoCoV2Config, MoCoV2),
    "byol": (BYOLConfig, BYOL),
    "swav": (SwAVConfig, SwAV),
    "simsiam": (SimSiamConfig, SimSiam),
}


def build_method(run):
    """The method module of a RunConfig."""
    return METHODS[run.method][1](run.model)
