build-exp/daemon/proto.o: daemon/proto.c daemon/proto.h fs/bytes.h
daemon/proto.h:
fs/bytes.h:
