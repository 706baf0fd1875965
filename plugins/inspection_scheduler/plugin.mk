# inspection_scheduler: libical expands RFC 5545 recurrence rules.
inspection_scheduler_CFLAGS := $(ICAL_CFLAGS)
inspection_scheduler_LIBS := $(ICAL_LIBS)
