"""Which torchvision ResNet a state dict in torchvision's names holds."""
import re

# (bottleneck blocks?, blocks per stage) -> torchvision constructor
RESNETS = {(False, (2, 2, 2, 2)): "resnet18", (False, (3, 4, 6, 3)): "resnet34", (True, (3, 4, 6, 3)): "resnet50",
           (True, (3, 4, 23, 3)): "resnet101", (True, (3, 8, 36, 3)): "resnet152"}


def resnet_structure(state_dict):
    """(bottleneck blocks?, blocks per stage) of a torchvision-named ResNet state dict."""
    blocks = tuple(len({m.group(1) for k in state_dict if (m := re.match(rf"layer{n}\.(\d+)\.", k))})
                   for n in range(1, 5))
    return "layer1.0.conv3.weight" in state_dict, blocks
