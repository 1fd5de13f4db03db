"""The course's own tooling, apart from the helpers the lessons teach with: the `triton-course` command (cli),
the doctor, prepare (builds the model files), the headless report (report, notebook_run, machine) and the
student copies of the labs."""
