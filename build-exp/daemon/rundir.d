build-exp/daemon/rundir.o: daemon/rundir.c daemon/rundir.h fs/iverr.h
daemon/rundir.h:
fs/iverr.h:
