# The tiny config with a hook that pauses once mid-stream ($STAG_TEST_PAUSE_FILE), so that a
# test can interrupt a CLI run there (tests/engine_utils.py, PauseOnceHook).
_base_ = './tiny_segformer_acdc.py'
custom_imports = dict(imports=['engine_utils'], allow_failed_imports=False)
custom_hooks = [dict(type='PauseOnceHook', iters=6)]
