"""Sample municipality (石家庄市, 130100): a deterministic generator of departmental source databases with
injected faults and their ground truth. Entry points: :func:`sample.generate.generate` and
``python -m sample.generate``; layouts in docs/sample_municipality.md.
"""
