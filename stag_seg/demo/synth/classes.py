"""Cityscapes train ids by name, looked up in mmseg's CityscapesDataset class list."""
from __future__ import annotations

from mmseg.datasets import CityscapesDataset

TRAIN_IDS: dict[str, int] = {name: i for i, name in
                             enumerate(CityscapesDataset.METAINFO['classes'])}
(ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN, VEGETATION, TERRAIN,
 SKY, PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE) = (
    TRAIN_IDS[name] for name in (
        'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light',
        'traffic sign', 'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck',
        'bus', 'train', 'motorcycle', 'bicycle'))
IGNORE = 255  # label of pixels that are not scored (the ego vehicle), as in Cityscapes
