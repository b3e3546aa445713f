"""flowforge: a library of normalising flows and a research toolkit for Glow, localised generative
flows, VAEs with flow decoders and the stability of invertible networks.

    import flowforge as ff
    flow = ff.Flow(ff.bijections.Chain([...]), ff.distributions.StandardNormal((2,)))
    model = ff.models.create("glow", image_shape=(1, 28, 28))
"""

from flowforge import bijections, distributions, models
from flowforge.flow import Flow, FlowDistribution

__version__ = "0.1.0"
__all__ = ["Flow", "FlowDistribution", "bijections", "distributions", "models", "__version__"]
