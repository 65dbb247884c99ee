"""EgoPlan-Bench (validation): choose the next action towards a task goal from
an egocentric video of the progress so far; four options, first capital A-D."""
from __future__ import annotations

from ._dataset import VideoBenchmark, dataset_params, video_params
from .base import Sample
from .scoring.aggregate import accuracy_with_breakdowns
from .scoring.choice import egoplan_letter

_CONTEXT = ("The task's progress is demonstrated in the provided video. "
            "My current field of view is shown in the provided image. "
            "What should be my next action? "
            "Please output the most reasonable action you think, expressed in a short phrase.")
# lmms-eval's EgoPlan instruction has no "directly." at the end.
_INSTRUCTION = "\nAnswer with the option's letter from the given choices"


def egoplan_question(goal: str) -> str:
    """lmms-eval's EgoPlan question from the task goal."""
    if "goal" in goal:
        # quirk: keeps what follows the first "to" anywhere in the text
        goal = goal.split("to", 1)[1].strip()
    if goal.split()[0].endswith("ing"):
        return f"I am tasked with {goal}. {_CONTEXT}"
    return f"My current task is to {goal}. {_CONTEXT}"


class EgoPlan(VideoBenchmark):
    name = "egoplan"
    max_new_tokens = 4096
    # named: some revisions of the repository hold a second configuration
    hub_id, hub_config, hub_split = "EgoLife-v1/EgoPlan", "egoplan", "validation"
    id_field = "sample_id"
    cache_subdir = "egoplan"
    params = {**dataset_params(hub_id, hub_config, hub_split), **video_params()}

    def build_sample(self, row, check):
        goal = check.text("task_goal")
        try:
            question = egoplan_question(goal)
        except IndexError:  # no "to" after "goal", or nothing left of the goal
            check.fail("task_goal", f"= {goal!r} cannot be turned into a question")
        options = "".join(f"\n{c}. {check.text('choice_' + c.lower())}" for c in "ABCD")
        video = self.sample_id(check)
        clip = self.frames(video)
        return Sample(
            id=video,
            prompt=question + options + _INSTRUCTION,
            references=check.choice("golden_choice_idx", tuple("ABCD")),
            frames=clip.frames,
            meta=clip.meta(),
        )

    def score(self, sample, prediction):
        letter = egoplan_letter(prediction)
        return {"pred": letter, "correct": float(letter == sample.references)}

    def aggregate(self, records):
        return accuracy_with_breakdowns(records)
