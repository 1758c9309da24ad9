"""Face tasks: one definition used to build instruction data and to score responses."""

from facellm.tasks.age import AgeTask
from facellm.tasks.attributes import AttributeTask
from facellm.tasks.base import Conversation, Task, sample_rng
from facellm.tasks.caption import CaptionTask
from facellm.tasks.demographics import AgeGroupTask, GenderTask
from facellm.tasks.expression import ExpressionTask
from facellm.tasks.verification import VerificationTask

__all__ = ["AgeGroupTask", "AgeTask", "AttributeTask", "CaptionTask", "Conversation", "ExpressionTask", "GenderTask", "Task",
           "VerificationTask", "sample_rng"]
