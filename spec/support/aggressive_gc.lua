-- Loaded with busted --helper for the aggressive-GC run: the collector runs
-- all the time, so a userdata or string the C code forgot to anchor is
-- collected while still in use, and the sanitizers see it.
collectgarbage("incremental", 0, 1000) -- pause 0: a new cycle at once; big steps
return true
