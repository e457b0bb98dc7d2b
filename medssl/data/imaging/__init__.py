"""Imaging data: DICOM, PNG/JPEG and npz readers, ingest scans and the imaging torch Dataset."""
