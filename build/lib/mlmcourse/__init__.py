"""mlmcourse: the helper library of the masked-language-model course.

Notation (stated once, in ``book/notation.md``): ``x`` is the original sequence, ``A(x)`` the
masked positions, ``x̄`` the corrupted input, ``θ`` the encoder, ``W`` the output layer,
``Pr_i^{W,θ}(· | x̄)`` the predicted distribution at position ``i``, and
``Loss = -Σ_{i∈A(x)} log Pr_i^{W,θ}(x_i | x̄)`` the minimised objective, in nats.
"""

__version__ = "0.1.0"
