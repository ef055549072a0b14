build-exp/fs/cidr.o: fs/cidr.c fs/cidr.h
fs/cidr.h:
