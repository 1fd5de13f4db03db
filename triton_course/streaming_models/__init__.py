"""Python-backend models for lesson 15 (streaming and stateful serving), shipped as package data.

Each `*_model.py` becomes a model's `1/model.py` (triton_course.streaming writes the repositories);
`charrnn.py` is copied beside the generator's model.py, and the course imports it too, so the served
text can be compared with the same network run in-process.
"""
