# CoTTA's 14 test-time-augmented views as CoTTA's code makes them (mmseg 0.x's
# MultiScaleFlipAug with img_scale=(960, 540), img_ratios=cotta_ratios, flip=True): the loaded,
# original image (ACDC: 1920x1080) resized, keeping its ratio, to fit int(960 r) x int(540 r) for
# each ratio r, each without and with a horizontal flip, ratios outermost: (0.5, no flip),
# (0.5, flip), (0.75, no flip), ... View 6, (1.0, no flip), is the base view: the same 960x540
# image every other method sees (the student's input). MultiScaleFlipViews packs the label once,
# on the base view, at full resolution. Put cotta_views last in a stream pipeline, after
# LoadImageFromFile and LoadExactAnnotations (no Resize before it).
cotta_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
cotta_views = dict(type='MultiScaleFlipViews', scale=(960, 540), ratios=cotta_ratios, flip=True)
# CoTTA's configs infer in slide mode (local_configs: crop 1024x1024, stride 768x768): the views
# larger than the crop (1.25 to 2.0) run as 2 to 6 windows; views up to 1024 are one window,
# the same as mode='whole'. The student's update forward stays whole (CoTTA's forward_train).
cotta_test_cfg = dict(_delete_=True, mode='slide', crop_size=(1024, 1024), stride=(768, 768))
