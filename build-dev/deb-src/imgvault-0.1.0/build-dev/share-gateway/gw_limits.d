build-dev/share-gateway/gw_limits.o: share-gateway/gw_limits.c \
 share-gateway/gw_limits.h fs/cidr.h
share-gateway/gw_limits.h:
fs/cidr.h:
