"""Generate the labs' student copies from the complete labs (never edit a student copy by hand).

The generator lives in triton_course/tools/student_copies.py (its docstring says what it does). Usage:
    python scripts/make_student_copies.py           write every student copy
    python scripts/make_student_copies.py --check   write nothing; exit 1 listing stale, missing
                                                    or orphaned copies (what CI runs)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, installed or not
from triton_course.tools.student_copies import main

if __name__ == "__main__":
    sys.exit(main())
