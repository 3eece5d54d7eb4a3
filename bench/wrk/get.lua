-- Plain GET of the URL given to wrk (/health, /metrics, /ready).
dofile("report.lua")
