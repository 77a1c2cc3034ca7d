"""What a reader of gcpo.py can skip, one concern per module; gcpo.py imports from them, never the reverse.

checks     option ranges and every input check (one-line errors at the boundary of each public function)
variants   the token-score and weight laws neither GCPO default uses, and the official code's loop, bit for bit
schemes    the credit-scheme contract (what a token-weighting function may ask for) and the peer schemes
kernels    speed only: a leaner backward for chosen-token log-probs, GPT-2's fused GELU; the KV cache's name
loading    tasks (built-in or plugged in), pretrained models and tokenizers, with one-line errors
metrics    what a run logs and writes: key-token share and AUC, weight statistics, clip fractions, run files
render     the printed and HTML samples shaded by token weight, and the run summary
cli        the command line, generated from gcpo.Config
"""
