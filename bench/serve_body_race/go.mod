module serve_body_race

go 1.26
