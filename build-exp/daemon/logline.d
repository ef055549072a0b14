build-exp/daemon/logline.o: daemon/logline.c daemon/logline.h
daemon/logline.h:
