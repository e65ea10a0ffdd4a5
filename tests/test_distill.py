"""Paired distillation: zero where the union draws its teachers, a pull towards teacher i for class i, exact resume."""

import torch
from training_helpers import SolidSource, tiny_pair

from cocktail.distill import distillation_penalty
from cocktail.merge.surgery import make_conditional
from cocktail.training import TrainingConfig, train


def drawn_in_range(G):
    """A freshly initialised G draws far outside [-1, 1], where the teachers' images are clamped (as the reals
    are): smaller ToRGB weights keep it inside, like a trained generator."""
    with torch.no_grad():
        for block in G.synthesis.blocks():
            block.torgb.weight.mul_(0.05)
    return G


def test_penalty_is_zero_where_the_union_draws_its_teachers_and_positive_elsewhere():
    teacher, D = tiny_pair(seed=1)
    teacher, other = drawn_in_range(teacher), drawn_in_range(tiny_pair(seed=2)[0])
    union, _ = make_conditional(teacher, D, 2)  # draws the teacher's images for every class
    torch.manual_seed(0)
    assert distillation_penalty([(teacher, None), (teacher, None)], 1.0, 8)(union).item() < 1e-10
    torch.manual_seed(0)
    assert distillation_penalty([(teacher, None), (other, None)], 1.0, 8)(union).item() > 1e-3


def test_a_conditional_teacher_is_asked_for_its_class_and_the_weight_scales_the_penalty():
    teacher, D = tiny_pair(seed=1, c_dim=2)
    student, _ = tiny_pair(seed=3, c_dim=2)
    with torch.no_grad():  # class 1 of the teacher draws something else than class 0
        teacher.mapping.embed.weight.mul_(5)
    as_class_1 = distillation_penalty([(teacher, 1), (teacher, 1)], 1.0, 8)
    as_class_0 = distillation_penalty([(teacher, 0), (teacher, 0)], 1.0, 8)
    torch.manual_seed(0)
    one = as_class_1(student).item()
    torch.manual_seed(0)
    assert abs(as_class_0(student).item() - one) > 1e-6
    torch.manual_seed(0)
    assert abs(distillation_penalty([(teacher, 1), (teacher, 1)], 3.0, 8)(student).item() - 3 * one) < 1e-5 * one


def test_minimising_the_penalty_moves_each_class_towards_its_own_teacher():
    teachers = [drawn_in_range(tiny_pair(seed=s)[0]) for s in (1, 2)]
    student, _ = tiny_pair(seed=3, c_dim=2)
    penalty = distillation_penalty([(t, None) for t in teachers], 1.0, 16)
    z = torch.randn([32, student.z_dim], generator=torch.Generator().manual_seed(9))

    def distance(cls, teacher):
        with torch.no_grad():
            c = torch.nn.functional.one_hot(torch.full([32], cls), 2).float()
            return (student(z, c, noise_mode="const") - teacher(z, None, noise_mode="const")).square().mean().item()

    before = [distance(i, t) for i, t in enumerate(teachers)]
    optimizer = torch.optim.Adam(student.parameters(), lr=0.01)
    torch.manual_seed(0)
    for _ in range(150):
        optimizer.zero_grad()
        penalty(student).backward()
        optimizer.step()
    after = [distance(i, t) for i, t in enumerate(teachers)]
    assert all(a < 0.5 * b for a, b in zip(after, before, strict=True)), (before, after)
    assert distance(0, teachers[0]) < distance(0, teachers[1]) and distance(1, teachers[1]) < distance(1, teachers[0])


def test_a_resumed_distilled_run_draws_the_same_latents_as_an_uninterrupted_one(tmp_path):
    """The latents come from the RNG that checkpoints save: stopping halfway and resuming changes nothing."""
    teachers = [(tiny_pair(seed=s)[0], None) for s in (1, 2)]
    config = dict(batch_size=4, g_lr=0.01, d_lr=0.01, r1_interval=2, pl_weight=0.0, style_mixing_prob=0.0,
                  ema_kimg=0.01, progress=False, checkpointing_kimg=0.016)

    def run(output, kimg, resume=None):
        G, D = tiny_pair(seed=0, c_dim=2)
        return train(G, D, SolidSource(((1, 0, 0), (0, 0, 1))), TrainingConfig(
            kimg=kimg, output_dir=str(output), resume_from_checkpoint=resume, **config),
            g_penalty=distillation_penalty(teachers, 1.0, 4))

    whole = run(tmp_path / "whole", 0.032)
    run(tmp_path / "split", 0.016)
    resumed = run(tmp_path / "split", 0.032, resume="latest")
    for name, value in whole.G.state_dict().items():
        assert torch.equal(value, resumed.G.state_dict()[name]), name
