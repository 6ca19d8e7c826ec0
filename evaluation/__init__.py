"""Automatic evaluation of translations on a paired rendered dataset (see evaluation/README.md).

Modules: ``pitch`` (CREPE f0 and chroma agreement), ``timbre`` (instrument classifier),
``distance`` (log-mel and multi-resolution STFT distance to the paired render), ``transcribe``
(the transcribe-then-render baseline), ``clips``, ``suite`` (the run) and ``report``.
"""
