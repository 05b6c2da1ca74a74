# The offline demo's stream: the procedural mini-ACDC (tools/make_demo_data.py) with inputs at
# 256x128, Adam lr 1e-4, and mini-Cityscapes val scored after each round without updates
# (forgetting check).
_base_ = './acdc_continual.py'
demo_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 128), keep_ratio=True),
    dict(type='LoadExactAnnotations'),
    dict(type='PackSegInputs'),
]
# no loader worker: on 2 cores a worker process beside torch's 2 compute threads made each step
# ~20x slower (oversubscribed spinning threads); the small PNGs load fast in the main process
stream_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(data_root='data/demo/acdc/', pipeline=demo_pipeline))
stream_loop = dict(
    num_rounds=10,
    # the tiny demo model barely moves at the real protocol's 6e-5/8 within a few rounds;
    # a larger step compresses a long horizon into the demo's minutes
    optimizer=dict(lr=1e-4),
    forgetting=dict(
        name='clean_val',
        dataset=dict(type='CityscapesDataset', data_root='data/demo/cityscapes/',
                     data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
                     pipeline=demo_pipeline)))
