"""Teacher fitting, active learning and distillation: small runs, determinism and resume."""
import math

import numpy as np
import pytest
import torch

from compactcortex.data.session import Session
from compactcortex.fit import TrainConfig, distill, fit_teacher, load_teacher, save_teacher, select_images
from compactcortex.fit.active import disagreement
from compactcortex.models.image_tensor import to_tensor


@pytest.fixture(scope="module")
def session():
    """Responses that are a known function of the images (mean brightness of a patch per neuron)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 112, 112, 3), dtype=np.uint8)
    patches = [(0, 0), (50, 50), (80, 20)]
    resp = np.stack([images[:, y:y + 30, x:x + 30].mean((1, 2, 3)) / 30 for y, x in patches])
    return Session("toy", images, resp)


def states_equal(a, b):
    return all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_fit_teacher_resume_equals_uninterrupted(session, tmp_path):
    cfg = TrainConfig(epochs=2, batch=8, patience=5)
    full = fit_teacher(session, n_members=2, indices=np.arange(30), config=cfg, progress=False)
    fit_teacher(session, n_members=2, indices=np.arange(30), config=TrainConfig(epochs=1, batch=8, patience=5),
                checkpoint_dir=tmp_path, progress=False)  # "interrupted" after epoch 1
    resumed = fit_teacher(session, n_members=2, indices=np.arange(30), config=cfg, checkpoint_dir=tmp_path,
                          progress=False)
    assert states_equal(full, resumed)
    save_teacher(resumed, tmp_path / "t.safetensors")
    back = load_teacher(tmp_path / "t.safetensors")
    np.testing.assert_array_equal(back.predict(session.images[:5]), resumed.predict(session.images[:5]))
    assert resumed.predict(session.images[:5]).shape == (5, 3)


def test_select_images_prefers_disagreement(session):
    class Fake:
        def predict_members(self, images, batch=64):
            n = len(images)
            base = np.arange(n, dtype=float)[None, :, None].repeat(3, 2)
            spread = np.zeros((2, n, 3))
            spread[0, 7], spread[1, 7] = 5, -5     # image 7: members disagree most
            spread[0, 3], spread[1, 3] = 2, -2     # image 3: second
            return base + spread

    assert select_images(Fake(), session.images[:10], 2).tolist() == [7, 3]
    with pytest.raises(ValueError, match="ensemble"):
        select_images(lambda x: x, session.images[:10], 2)
    with pytest.raises(ValueError):
        disagreement(np.zeros((1, 4, 2)))


def test_distill_learns_and_resumes(session, tmp_path):
    teacher = lambda x: x[:, 0, 40:70, 40:70].mean((1, 2)) / 10  # noqa: E731 - a smooth single-neuron teacher
    kw = dict(images=session.images, batch=8, nums_filters=(4, 4, 3, 3, 2), seed=1, progress=False)
    full = distill(teacher, None, steps=6, **kw)
    distill(teacher, None, steps=6, checkpoint=tmp_path / "d.pt", **kw)
    resumed = distill(teacher, None, steps=6, checkpoint=tmp_path / "d.pt", **kw)  # finds the finished run
    assert states_equal(full, resumed)
    # a run killed at step 5 resumes from its step-4 checkpoint and ends identical
    from compactcortex.fit.distill import ImageStream, fine_tune
    from compactcortex.models.compact import CompactModel

    stream = ImageStream(session.images, 8, 0.5, 1)

    def dying(step):
        if step == 5:
            raise KeyboardInterrupt
        return stream(step)

    half = tmp_path / "h.pt"
    torch.manual_seed(1)
    with pytest.raises(KeyboardInterrupt):
        fine_tune(CompactModel((4, 4, 3, 3, 2)), teacher, None, dying, 6, lr=1e-3, checkpoint=half,
                  progress=False, init_bias=True, checkpoint_every=2)
    torch.manual_seed(1)
    b = CompactModel((4, 4, 3, 3, 2))
    fine_tune(b, teacher, None, stream, 6, lr=1e-3, checkpoint=half, progress=False, init_bias=True)
    assert states_equal(b, full)
    # and training reduces the error against the teacher
    x = to_tensor(session.images[:16])
    y = teacher(x)
    with torch.no_grad():
        untrained = CompactModel((4, 4, 3, 3, 2)).eval()
        assert torch.mean((full(x) - y) ** 2) < torch.mean((untrained(x) - y) ** 2)


def test_first_step_on_a_wide_readout_stays_below_the_response_spread(session):
    """Adam moves every weight by ~lr per step, so a 28*28*24-input readout at the body's rate moves
    the output by many response standard deviations at once; the default readout rate must not."""
    from compactcortex.fit.distill import ImageStream, fine_tune
    from compactcortex.models.compact import CompactModel

    def teacher(x):
        return x[:, 0, 40:70, 40:70].mean((1, 2)) / 10

    stream = ImageStream(session.images, 8, 0.0, 0)
    x = stream(0)
    scale = float(torch.cat([teacher(stream(10**9 + i)) for i in range(4)]).std())

    def after_one_step(readout_lr):
        torch.manual_seed(0)
        student = CompactModel((6, 6, 6, 6, 24))
        fine_tune(student, teacher, None, stream, 1, lr=1e-3, progress=False, init_bias=True,
                  readout_lr=readout_lr)
        student.train()  # batch statistics, as in the step itself (activations ~1, not the init's ~0)
        with torch.no_grad():
            return student(x).double()

    # The readout is linear in its weights and Adam's first step moves them by -readout_lr * m/sqrt(v),
    # the same direction whatever readout_lr, while the body's step does not depend on it: the outputs
    # are affine in readout_lr. The default must sit at lr / sqrt(fan-in) on that line (fan-in 28*28*24).
    still, full, default = after_one_step(0.0), after_one_step(1e-3), after_one_step(None)
    torch.testing.assert_close(default - still, (full - still) / math.sqrt(28 * 28 * 24), rtol=1e-3, atol=1e-4 * scale)
    assert float((full - still).abs().max()) > 0, "the readout moved"


def patch_teacher(x):
    """Three smooth 'neurons': mean brightness of three patches (N, 3)."""
    return torch.stack([x[:, 0, y:y + 30, x0:x0 + 30].mean((1, 2)) / 10 for y, x0 in ((0, 0), (50, 50), (80, 20))], 1)


def test_population_distillation_resumes_and_reuses_the_teachers_targets(session, tmp_path):
    from compactcortex.fit.distill import distill_population

    kw = dict(batch=8, nums_filters=(4, 4, 3, 3, 2), pool_size=24, seed=2, progress=False)
    full = distill_population(patch_teacher, None, session.images, 6, **kw)
    assert full.num_outputs == 3
    distill_population(patch_teacher, None, session.images, 6, checkpoint=tmp_path / "p.pt", **kw)
    assert (tmp_path / "p.pt.targets.npy").is_file()

    def no_teacher(x):
        raise AssertionError("the cached targets should have been used")

    resumed = distill_population(no_teacher, None, session.images, 6, checkpoint=tmp_path / "p.pt", **kw)
    assert states_equal(full, resumed)
    two = distill_population(patch_teacher, [2, 0], session.images, 2, **kw)
    assert two.num_outputs == 2


def test_target_pool_is_deterministic_and_fine_tune_checks_target_shapes(session):
    from compactcortex.fit.distill import ImageStream, TargetPool, fine_tune
    from compactcortex.models.compact import CompactModel

    pool = TargetPool(ImageStream(session.images, 8, 0.5, 0), patch_teacher, [1], 16, 4, progress=False)
    (xa, ya), (xb, yb) = pool(3), pool(3)
    assert torch.equal(xa, xb) and torch.equal(ya, yb) and ya.shape == (4,)
    with torch.no_grad():
        torch.testing.assert_close(ya, patch_teacher(xa)[:, 1])
    with pytest.raises(ValueError, match="pass neuron="):
        fine_tune(CompactModel((3, 3, 3, 3, 3)), patch_teacher, None, ImageStream(session.images, 4, 0, 0), 1,
                  progress=False)
