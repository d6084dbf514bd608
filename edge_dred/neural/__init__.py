"""Neural runtimes on the int8 kernels: the vocoder, the PLC feature predictor, the
vocoder continuation both concealment paths share, and the float layer reference."""
