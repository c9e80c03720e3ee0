"""Sample municipality (石家庄市, 130100): a deterministic generator of departmental source databases with
injected faults and their ground truth. Entry points: :func:`jobs.sample.generate.generate` and
``python -m jobs.sample.generate``; layouts in docs/sample_municipality.md.
"""
