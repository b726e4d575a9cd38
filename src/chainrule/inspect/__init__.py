from chainrule.inspect.anomaly import AnomalyError, detect_anomaly  # noqa: F401
from chainrule.inspect.draw import Drawing, draw  # noqa: F401
from chainrule.inspect.explain import Explanation, explain  # noqa: F401
from chainrule.inspect.flow import GradientFlow  # noqa: F401
from chainrule.inspect.gradcheck import GradcheckError, gradcheck  # noqa: F401
from chainrule.inspect.graph import walk  # noqa: F401
from chainrule.inspect.memory import memory  # noqa: F401
from chainrule.inspect.page import write_page  # noqa: F401
from chainrule.inspect.record import Trace, record, trace  # noqa: F401
from chainrule.inspect.sensitivity import sensitivity  # noqa: F401
