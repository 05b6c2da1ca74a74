# CoTTA's 14 test-time-augmented views, made by mmcv's TestTimeAug from the base view (the input
# every method sees): the base view scaled by each of cotta_scales (scale_factor is relative to
# it), each without and with a horizontal flip, scales outermost: (0.5, no flip), (0.5, flip),
# (0.75, no flip), ... View 4, (1.0, no flip), is the base view itself (the student's input);
# TestTimeAugSharedLabel flags it and packs the label once, on it alone, at full resolution.
# Put cotta_views last in a stream pipeline, after Resize (the base view) and
# LoadExactAnnotations.
cotta_scales = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
cotta_views = dict(
    type='TestTimeAugSharedLabel',
    transforms=[
        [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in cotta_scales],
        [dict(type='RandomFlip', prob=0.0, direction='horizontal'),
         dict(type='RandomFlip', prob=1.0, direction='horizontal')],
        [dict(type='PackSegInputs')],
    ])
